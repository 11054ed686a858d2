// Small DOM helpers. Text always goes in as text (never as HTML), so data
// from the API cannot inject markup.

// h builds an element: h('a', {href, class, test: 'x', onclick}, children…).
// "test" sets data-test-id.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';

// s builds an SVG element.
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'test') el.setAttribute('data-test-id', v);
    else if (k === 'class') el.setAttribute('class', v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

// when is a <time> for an RFC 3339 timestamp, or a dash.
export function when(iso, test) {
  if (!iso) return h('span', { class: 'muted', test }, '—');
  return h('time', { datetime: iso, title: iso, test }, dateTime.format(new Date(iso)));
}

// badge shows a status word as it is in the API.
export function badge(status, test) {
  return h('span', { class: `badge badge-${status}`, test }, status);
}

export function loading(text = 'Loading…') {
  return h('div', { class: 'state-box', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), h('p', {}, text));
}

export function empty(title, text, action) {
  return h('div', { class: 'state-box empty' },
    h('span', { class: 'state-art', 'aria-hidden': 'true' }, icon('inbox')),
    h('p', { class: 'state-title' }, title),
    text && h('p', { class: 'muted' }, text),
    action);
}

// thead is a table's header row; the columns named in numeric line up
// right, over their numbers.
export function thead(columns, numeric = []) {
  return h('thead', {}, h('tr', {}, columns.map((t) => h('th', { scope: 'col', class: numeric.includes(t) ? 'num' : null }, t))));
}

// emptyRow is a table's only row when it has nothing to list: the state box
// across all columns, so the table (and its data-test-id) is always there.
export function emptyRow(columns, box) {
  return h('tr', { class: 'empty-row' }, h('td', { colspan: columns }, box));
}

export function failure(err, retry) {
  return h('div', { class: 'state-box error', role: 'alert' },
    h('span', { class: 'state-art', 'aria-hidden': 'true' }, icon('alert')),
    h('p', { class: 'state-title' }, 'Something went wrong'),
    h('p', { class: 'muted' }, err && err.message ? err.message : String(err)),
    retry && h('button', { type: 'button', class: 'btn btn-secondary btn-sm', onclick: retry }, 'Try again'));
}

// notice is an inline message under a form: kind is "error" or "ok".
export function notice(el, kind, text) {
  el.className = `notice notice-${kind}`;
  el.textContent = text;
  el.hidden = !text;
}

const ICONS = {
  home: 'M3 11 12 4l9 7v9a1 1 0 0 1-1 1h-5v-6H9v6H4a1 1 0 0 1-1-1v-9Z',
  list: 'M4 6h16v2H4V6Zm0 5h16v2H4v-2Zm0 5h10v2H4v-2Z',
  hook: 'M12 3a4 4 0 0 1 1 7.9V13h-2v-4h1a2 2 0 1 0-2-2H8a4 4 0 0 1 4-4Zm-6 9a4 4 0 0 1 3-3.9v2.2A2 2 0 1 0 11 15h7.2a4 4 0 1 1 0 2H11a4 4 0 0 1-5-5Zm14 3a2 2 0 1 0 0 .1V15Z',
  book: 'M5 4h11a3 3 0 0 1 3 3v13H8a3 3 0 0 1-3-3V4Zm2 2v11a1 1 0 0 0 1 1h9V7a1 1 0 0 0-1-1H7Z',
  copy: 'M8 4h10a2 2 0 0 1 2 2v10h-2V6H8V4Zm-2 4h9a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2v-9a2 2 0 0 1 2-2Zm0 2v9h9v-9H6Z',
  inbox: 'M4 4h16l2 9v6a1 1 0 0 1-1 1H3a1 1 0 0 1-1-1v-6l2-9Zm1.6 2-1.4 7H9a3 3 0 0 0 6 0h4.8l-1.4-7H5.6Z',
  alert: 'M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20Zm1 15h-2v-2h2v2Zm0-4h-2V7h2v6Z',
  out: 'M10 4H5v16h5v-2H7V6h3V4Zm5.6 3.6L14.2 9l2 2H9v2h7.2l-2 2 1.4 1.4L20 12l-4.4-4.4Z',
  back: 'M15.4 5.4 14 4l-8 8 8 8 1.4-1.4L8.8 12l6.6-6.6Z',
};

export function icon(name) {
  return s('svg', { viewBox: '0 0 24 24', class: 'icon', 'aria-hidden': 'true' }, s('path', { d: ICONS[name] }));
}

// copyButton copies text() and says so.
export function copyButton(text, label = 'Copy') {
  const b = h('button', { type: 'button', class: 'btn btn-ghost btn-sm copy-button', 'aria-label': label }, icon('copy'), h('span', {}, 'Copy'));
  b.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text());
      b.lastChild.textContent = 'Copied';
    } catch {
      b.lastChild.textContent = 'Select and copy';
    }
    setTimeout(() => { b.lastChild.textContent = 'Copy'; }, 1600);
  });
  return b;
}

// label wraps a control with its visible label.
export function field(labelText, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, labelText), control, hint && h('p', { class: 'hint' }, hint));
}
