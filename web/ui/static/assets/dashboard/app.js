// The dashboard: one document for every /dashboard page. This module signs
// the merchant in (or finds the session), draws the layout and navigation,
// and hands the main area to the page the path names.
import { api } from './api.js';
import { h, icon, failure, notice } from './dom.js';
import * as home from './home.js';
import * as transactions from './transactions.js';
import * as payment from './payment.js';
import * as webhooks from './webhooks.js';
import * as docs from './docs.js';

const NAV = [
  { path: '/dashboard', label: 'Overview', icon: 'home', page: home },
  { path: '/dashboard/transactions', label: 'Transactions', icon: 'list', page: transactions },
  { path: '/dashboard/webhooks', label: 'Webhooks', icon: 'hook', page: webhooks },
  { path: '/dashboard/docs', label: 'Docs', icon: 'book', page: docs },
];

const app = document.getElementById('app');

function route() {
  const path = location.pathname.replace(/\/+$/, '') || '/dashboard';
  const detail = /^\/dashboard\/transactions\/([^/]+)$/.exec(path);
  if (detail) return { nav: NAV[1], page: payment, param: decodeURIComponent(detail[1]) };
  const nav = NAV.find((n) => n.path === path) || NAV[0];
  return { nav, page: nav.page };
}

async function boot() {
  let me;
  try {
    me = await api('/me');
  } catch (err) {
    if (err.status === 401) return signIn();
    app.replaceChildren(h('div', { class: 'boot' }, failure(err, boot)));
    return;
  }
  render(me);
}

function render(me) {
  const { nav, page, param } = route();
  const main = h('main', { id: 'main', class: 'main', tabindex: '-1' });
  const logout = h('button', { type: 'button', class: 'btn btn-ghost btn-sm logout', test: 'logout-button' }, icon('out'), 'Sign out');
  const logoutMsg = h('p', { role: 'alert', hidden: true });
  logout.addEventListener('click', async () => {
    logout.disabled = true;
    try {
      await api('/session', { method: 'DELETE' });
    } catch (err) {
      // The server clears the cookie even when it fails to end the session;
      // but no answer (offline) or a refusal leaves it set. Show the form
      // only once this browser is signed out, or a shared computer would
      // still be signed in behind it.
      if (!(await signedOut())) {
        notice(logoutMsg, 'error', `Sign-out failed: ${err.message}. You are still signed in; try again.`);
        logout.disabled = false;
        return;
      }
    }
    signIn();
  });
  const sidebar = h('header', { class: 'sidebar' },
    h('a', { class: 'brand', href: '/dashboard' }, h('img', { src: '/assets/favicon.svg', alt: '', width: 28, height: 28 }), h('span', {}, 'paygate')),
    h('nav', { class: 'nav', 'aria-label': 'Dashboard' },
      NAV.map((n) => h('a', { href: n.path, class: 'nav-link', 'aria-current': n === nav ? 'page' : null }, icon(n.icon), h('span', {}, n.label)))),
    h('div', { class: 'account' },
      h('div', { class: 'account-who' },
        h('span', { class: 'account-avatar', 'aria-hidden': 'true' }, (me.name.trim()[0] || '?').toUpperCase()),
        h('div', { class: 'account-text' }, h('strong', {}, me.name), h('span', { class: 'muted small' }, me.email))),
      logout, logoutMsg));
  app.replaceChildren(h('a', { class: 'skip-link', href: '#main' }, 'Skip to content'), h('div', { class: 'layout' }, sidebar, main));
  document.title = `${nav.label} · paygate`;
  page.render(main, me, param);
}

// signedOut reports whether this browser holds no session any more.
async function signedOut() {
  try {
    await api('/me');
    return false;
  } catch (err) {
    return err.status === 401;
  }
}

// signIn shows the sign-in form. The secret goes to the server once and is
// cleared from the form; the server answers with a session cookie.
function signIn() {
  if (document.querySelector('[data-test-id="login-form"]')) return; // shown already
  const key = h('input', { id: 'login-key', type: 'text', name: 'api_key', test: 'login-key-input', autocomplete: 'username', spellcheck: 'false', autocapitalize: 'none', required: true, placeholder: 'key_…' });
  const secret = h('input', { id: 'login-secret', type: 'password', name: 'api_secret', test: 'login-secret-input', autocomplete: 'current-password', required: true, placeholder: 'secret_…' });
  const error = h('p', { class: 'notice notice-error', test: 'login-error', role: 'alert', hidden: true });
  const button = h('button', { type: 'submit', class: 'btn btn-primary btn-block', test: 'login-button' }, 'Sign in');
  const form = h('form', { class: 'login-form', test: 'login-form', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'login-key' }, 'API key'), key),
    h('div', { class: 'field' }, h('label', { for: 'login-secret' }, 'API secret'), secret),
    error, button);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!key.value.trim() || !secret.value) {
      notice(error, 'error', 'Enter your API key and secret.');
      (key.value.trim() ? secret : key).focus();
      return;
    }
    button.disabled = true;
    button.textContent = 'Signing in…';
    try {
      const me = await api('/session', { method: 'POST', body: { api_key: key.value.trim(), api_secret: secret.value } });
      secret.value = '';
      render(me);
    } catch (err) {
      notice(error, 'error', err.status === 401 ? 'That API key and secret do not match. Check them and try again.' : err.message);
      secret.value = '';
      secret.focus();
      button.disabled = false;
      button.textContent = 'Sign in';
    }
  });
  document.title = 'Sign in · paygate';
  app.replaceChildren(h('main', { class: 'login' },
    h('div', { class: 'login-card' },
      h('div', { class: 'brand brand-lg' }, h('img', { src: '/assets/favicon.svg', alt: '', width: 36, height: 36 }), h('span', {}, 'paygate')),
      h('h1', {}, 'Sign in to your dashboard'),
      h('p', { class: 'muted' }, 'Use the API key and secret of your merchant account.'),
      form),
    h('p', { class: 'login-foot muted small' }, 'The secret is checked once and never stored in this browser.')));
  key.focus();
}

addEventListener('paygate:signed-out', signIn);

boot();
