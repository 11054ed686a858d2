// Calls to the dashboard's JSON routes (/dashboard/api/…). The session is
// an HttpOnly cookie the browser sends by itself: the page never sees the
// token or the API secret.

import { APIError, newIdempotencyKey } from '../api-client.js';

// api calls path under /dashboard/api. A 401 on anything but the sign-in
// itself means the session ended: the app shows the sign-in form.
export async function api(path, { method = 'GET', body, idempotencyKey } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
  let res;
  try {
    res = await fetch(`/dashboard/api${path}`, {
      method, headers, credentials: 'same-origin', cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new APIError(0, null);
  }
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const err = new APIError(res.status, data);
    if (res.status === 401 && path !== '/session') dispatchEvent(new CustomEvent('paygate:signed-out'));
    throw err;
  }
  return data;
}

// query builds "?a=1&b=2" from the set values of params.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== undefined && v !== null) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

// newKey is a fresh Idempotency-Key for one click of a button that creates
// something, so that a network retry of that click cannot create it twice.
export const newKey = () => newIdempotencyKey('dash_');
