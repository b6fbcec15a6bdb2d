import { useState } from 'preact/hooks';
import { messageOf } from './heading.js';

/** No session yet: how to get a login address, or paste a token (posted once, never kept). */
export function LoginPage({ error, onToken }: { error: string | null; onToken: (token: string) => Promise<void> }) {
  const [token, setToken] = useState('');
  const [failed, setFailed] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const shown = failed ?? error;
  return (
    <main class="login">
      <h1>Log in to scoped</h1>
      <p>
        On the server, run <code>cpcmd gui</code> and open the address it prints: it logs you in with your own token, once, within a minute.
      </p>
      {shown !== null && (
        <p class="error" role="alert">
          {shown}
        </p>
      )}
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setFailed(null);
          try {
            await onToken(token.trim());
          } catch (err) {
            setFailed(messageOf(err));
          } finally {
            setToken('');
            setBusy(false);
          }
        }}
      >
        <div class="field">
          <label for="token">Or paste a token</label>
          <input id="token" type="password" autocomplete="off" value={token} onInput={(e) => setToken(e.currentTarget.value)} />
        </div>
        <button type="submit" disabled={busy || token.trim() === ''}>
          Log in
        </button>
      </form>
    </main>
  );
}
