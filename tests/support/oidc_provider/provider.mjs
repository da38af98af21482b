// A certified OpenID Provider (panva's oidc-provider) for the hub's sign-in tests.
//
// Started by tests/support/oidc_provider.py on a free 127.0.0.1 port:
//   node provider.mjs <port>
// It answers 503 until the test configures it with POST /__control/configure (JSON below),
// and can be reconfigured at any time; the provider is rebuilt each time, keeping its keys.
//   {
//     "issuer": "http://127.0.0.1:PORT/",        exactly as it will appear in documents
//     "clientAuthMethods": ["client_secret_basic", ...],   advertised at discovery
//     "clients": [ oidc-provider client metadata ... ],
//     "accounts": { "login": { claims other than sub } },
//     "userinfo": true,                            false: no userinfo endpoint, claims in the id_token
//     "routes": { "token": "/oauth/token" },       optional: move endpoints (oidc-provider routes)
//     "fault": null | "id_token_wrong_audience" | "id_token_malformed" | "id_token_expired"
//              | "id_token_bad_signature" | "userinfo_not_json" | "userinfo_other_subject"
//   }
// POST /__control/rotate-keys puts a new signing key first (the old one stays published).
// GET /__control/requests lists "METHOD /path" of every request the provider answered.
// Faults are applied to the provider's own answers, re-signed with its own key where a
// signature is needed, so the hub sees exactly what a broken or hostile provider would send.

import { createServer } from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';

import Provider from 'oidc-provider';
import { SignJWT, importJWK, decodeJwt, decodeProtectedHeader } from 'jose';

const port = Number(process.argv[2]);
const signingKeys = [newSigningKey()];
const served = [];
let settings = null;
let provider = null;
let handler = null;

function newSigningKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

function build() {
  const accounts = settings.accounts || {};
  const userinfo = settings.userinfo !== false;
  const claimNames = new Set();
  for (const claims of Object.values(accounts)) {
    for (const name of Object.keys(claims)) claimNames.add(name);
  }
  provider = new Provider(settings.issuer, {
    clients: settings.clients,
    ...(settings.routes ? { routes: settings.routes } : {}),
    clientAuthMethods: settings.clientAuthMethods
      || ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
    jwks: { keys: signingKeys },
    cookies: { keys: ['oidc-provider-test-cookie-key'] },
    claims: { openid: ['sub'], hub: [...claimNames] },
    scopes: ['openid', 'hub'],
    // Without a userinfo endpoint the claims must travel in the id_token (OIDC Core §5.4).
    conformIdTokenClaims: userinfo,
    features: {
      userinfo: { enabled: userinfo },
      jwtUserinfo: { enabled: userinfo },
      rpInitiatedLogout: { enabled: true },
    },
    enabledJWA: {
      clientAuthSigningAlgValues: ['RS256', 'RS384', 'ES256', 'ES384', 'PS256'],
      userinfoSigningAlgValues: ['RS256'],
      idTokenSigningAlgValues: ['RS256'],
    },
    pkce: { required: () => true },
    async findAccount(ctx, id) {
      if (!(id in accounts)) return undefined;
      return { accountId: id, claims: async () => ({ sub: id, ...accounts[id] }) };
    },
  });
  provider.use(applyFault);
  handler = provider.callback();
}

async function resign(token, changes) {
  const key = await importJWK(signingKeys[0], 'RS256');
  return new SignJWT({ ...decodeJwt(token), ...changes })
    .setProtectedHeader(decodeProtectedHeader(token))
    .sign(key);
}

async function applyFault(ctx, next) {
  await next();
  const fault = settings.fault;
  if (!fault) return;
  if (ctx.path.endsWith('/token') && ctx.body?.id_token) {
    const token = ctx.body.id_token;
    if (fault === 'id_token_wrong_audience') {
      ctx.body = { ...ctx.body, id_token: await resign(token, { aud: 'someone-else' }) };
    } else if (fault === 'id_token_expired') {
      const past = Math.floor(Date.now() / 1000) - 3600;
      ctx.body = { ...ctx.body, id_token: await resign(token, { iat: past - 60, exp: past }) };
    } else if (fault === 'id_token_malformed') {
      ctx.body = { ...ctx.body, id_token: 'this.is-not-a.jwt' };
    } else if (fault === 'id_token_bad_signature') {
      // The provider's own signature over claims it did not sign.
      const [header, , signature] = token.split('.');
      const altered = Buffer.from(JSON.stringify({ ...decodeJwt(token), sub: 'someone-else' }));
      ctx.body = { ...ctx.body, id_token: `${header}.${altered.toString('base64url')}.${signature}` };
    }
  }
  if (ctx.path.endsWith('/me') && ctx.status === 200) {
    if (fault === 'userinfo_not_json') {
      ctx.type = 'application/json';
      ctx.body = '{"sub": "unterminated';
    } else if (fault === 'userinfo_other_subject') {
      ctx.body = { ...ctx.body, sub: 'someone-else' };
    }
  }
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function answer(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}

async function control(req, res) {
  if (req.method === 'POST' && req.url === '/__control/configure') {
    settings = JSON.parse(await readBody(req));
    build();
    return answer(res, 200, { issuer: provider.issuer });
  }
  if (req.method === 'POST' && req.url === '/__control/rotate-keys') {
    signingKeys.unshift(newSigningKey());
    build();
    return answer(res, 200, { kids: signingKeys.map((key) => key.kid) });
  }
  if (req.method === 'GET' && req.url === '/__control/requests') {
    return answer(res, 200, served);
  }
  return answer(res, 404, { error: 'no such control' });
}

const server = createServer((req, res) => {
  if (req.url.startsWith('/__control/')) {
    control(req, res).catch((error) => answer(res, 400, { error: String(error) }));
    return;
  }
  if (!handler) {
    answer(res, 503, { error: 'not configured yet' });
    return;
  }
  served.push(`${req.method} ${req.url.split('?')[0]}`);
  // An issuer with a path (https://idp/tenant or https://idp/tenant/) is mounted under it.
  const mount = new URL(settings.issuer).pathname.replace(/\/$/, '');
  if (mount && req.url.startsWith(mount)) {
    req.originalUrl = req.url;
    req.url = req.url.slice(mount.length) || '/';
  }
  handler(req, res);
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening on 127.0.0.1:${port}\n`);
});
