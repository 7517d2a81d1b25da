import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { BrowserRouter } from 'react-router';
import { App } from './app.tsx';
import { SessionProvider } from './session.tsx';
import './styles.css';

const queries = new QueryClient({
  defaultOptions: {
    // 4xx answers are final (a retry changes nothing); a 503 during a database restart is worth two more tries
    queries: { retry: (count, error) => count < 2 && !(error instanceof Error && 'status' in error && Number(error.status) < 500), staleTime: 2_000 },
  },
});

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <QueryClientProvider client={queries}>
      <BrowserRouter>
        <SessionProvider>
          <App />
        </SessionProvider>
      </BrowserRouter>
    </QueryClientProvider>
  </StrictMode>,
);
