// What the checkout page and the dashboard share as clients of paygate's
// JSON API: the error an answer carries, and fresh Idempotency-Keys.

// APIError is a failed call: the error envelope's description, code and
// field, or status 0 when the server could not be reached.
export class APIError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.description || (status ? `Request failed (HTTP ${status})` : 'Could not reach the server. Check your connection.'));
    this.status = status;
    this.code = e.code || '';
    this.field = e.field || '';
  }
}

// newIdempotencyKey is a fresh key, prefix + 32 hex digits, for one click of
// a button that creates something: a network retry of that click cannot
// create it twice.
export function newIdempotencyKey(prefix) {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return prefix + [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}
