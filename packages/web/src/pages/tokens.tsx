import { useEffect, useState } from 'preact/hooks';
import { useApp } from '../app.js';
import { Heading, messageOf } from './heading.js';

interface Token {
  id: string;
  name: string;
  role: string;
  scopes: string[];
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  revoked: boolean;
}

/** Tokens, for admins: create one (its secret shown once, here only) and revoke. */
export function TokensPage() {
  const { rpc } = useApp();
  const [tokens, setTokens] = useState<Token[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [role, setRole] = useState('reader');
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState('');
  const [expires, setExpires] = useState('');
  const [created, setCreated] = useState<{ name: string; token: string } | null>(null);

  const refresh = () =>
    rpc
      .call<{ tokens: Token[] }>('token.list')
      .then((r) => setTokens(r.tokens))
      .catch((e) => setError(messageOf(e)));
  useEffect(() => {
    refresh();
  }, []);

  async function create(): Promise<void> {
    const params: Record<string, unknown> = { role };
    if (name.trim() !== '') params.name = name.trim();
    const globs = scopes
      .split(/[\s,]+/)
      .map((s) => s.trim())
      .filter((s) => s !== '');
    if (globs.length > 0) params.scopes = globs;
    if (expires.trim() !== '') params.expires = expires.trim();
    try {
      const t = await rpc.call<Token & { token: string }>('token.create', params);
      setCreated({ name: t.name, token: t.token });
      setError(null);
      setName('');
      setScopes('');
      setExpires('');
      refresh();
    } catch (e) {
      setError(messageOf(e));
    }
  }

  async function revoke(t: Token): Promise<void> {
    try {
      await rpc.call('token.revoke', { id: t.id });
      refresh();
    } catch (e) {
      setError(messageOf(e));
    }
  }

  return (
    <>
      <Heading>Tokens</Heading>
      <section aria-labelledby="create-h">
        <h2 id="create-h">Create a token</h2>
        <form
          class="filters"
          onSubmit={(e) => {
            e.preventDefault();
            create();
          }}
        >
          <div class="field">
            <label for="token-role">Role</label>
            <select id="token-role" value={role} onChange={(e) => setRole(e.currentTarget.value)}>
              <option value="reader">reader</option>
              <option value="operator">operator</option>
              <option value="admin">admin</option>
            </select>
          </div>
          <div class="field">
            <label for="token-name">Name (optional)</label>
            <input id="token-name" type="text" value={name} onInput={(e) => setName(e.currentTarget.value)} />
          </div>
          <div class="field">
            <label for="token-scopes">Scopes (globs, optional)</label>
            <input id="token-scopes" type="text" placeholder="mail.*" value={scopes} onInput={(e) => setScopes(e.currentTarget.value)} />
          </div>
          <div class="field">
            <label for="token-expires">Expires after (optional)</label>
            <input id="token-expires" type="text" placeholder="30d" value={expires} onInput={(e) => setExpires(e.currentTarget.value)} />
          </div>
          <button type="submit">Create token</button>
        </form>
        {error !== null && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        {created !== null && (
          <div class="notice" role="status">
            <p>The token {created.name}, shown this once (copy it now; it is not kept by this page):</p>
            <p>
              <code class="secret">{created.token}</code>
            </p>
            <button type="button" class="secondary" onClick={() => setCreated(null)}>
              Hide the token
            </button>
          </div>
        )}
      </section>
      <section aria-labelledby="list-h">
        <h2 id="list-h">Tokens</h2>
        <ul class="tokens">
          {(tokens ?? []).map((t) => (
            <li key={t.id}>
              <strong>{t.name}</strong> {t.role}
              {t.scopes.length > 0 && ` on ${t.scopes.join(', ')}`}, created {new Date(t.createdAt).toLocaleString()}
              {t.expiresAt !== null && `, expires ${new Date(t.expiresAt).toLocaleString()}`}
              {t.lastUsedAt !== null && `, last used ${new Date(t.lastUsedAt).toLocaleString()}`}
              {t.revoked ? (
                <span class="badge">revoked</span>
              ) : (
                <button type="button" class="danger" onClick={() => revoke(t)}>
                  Revoke {t.name}
                </button>
              )}
            </li>
          ))}
        </ul>
      </section>
    </>
  );
}
