/* Baton Inbox: the agent and admin single-page app served at /inbox.
 *
 * Plain ES2020, no framework, no build step. Rules kept throughout:
 *  - user-supplied strings only ever go through textContent / setAttribute;
 *  - no inline styles or handlers (the page runs under a strict CSP);
 *  - everything lives inside this IIFE, nothing leaks to window.
 */
(() => {
  'use strict';

  // ---------------------------------------------------------------------------
  // DOM helpers
  // ---------------------------------------------------------------------------

  const PROPS = new Set(['value', 'checked', 'disabled', 'selected', 'hidden', 'indeterminate', 'readOnly', 'required', 'multiple', 'open']);

  /** Builds an element. Strings among the children become text nodes (never HTML). */
  function h(tag, props, ...kids) {
    const el = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null || v === false) {
          if (PROPS.has(k) && v === false) el[k] = false;
          continue;
        }
        if (k === 'class') el.className = v;
        else if (k === 'text') el.textContent = v;
        else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v);
        else if (PROPS.has(k)) el[k] = v;
        else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    append(el, kids);
    return el;
  }

  function append(el, kids) {
    for (const kid of kids) {
      if (kid === null || kid === undefined || kid === false) continue;
      if (Array.isArray(kid)) append(el, kid);
      else if (kid instanceof Node) el.appendChild(kid);
      else el.appendChild(document.createTextNode(String(kid)));
    }
    return el;
  }

  function clear(el) {
    while (el && el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';

  // Feather-style stroke icons (fixed path data, no user data).
  const ICONS = {
    inbox: 'M22 12h-6l-2 3h-4l-2-3H2 M5.45 5.11L2 12v6a2 2 0 0 0 2 2h16a2 2 0 0 0 2-2v-6l-3.45-6.89A2 2 0 0 0 16.76 4H7.24a2 2 0 0 0-1.79 1.11z',
    chart: 'M12 20V10 M18 20V4 M6 20v-4',
    settings: 'M4 21v-7 M4 10V3 M12 21v-9 M12 8V3 M20 21v-5 M20 12V3 M1 14h6 M9 8h6 M17 16h6',
    users: 'M17 21v-2a4 4 0 0 0-4-4H5a4 4 0 0 0-4 4v2 M9 3a4 4 0 1 0 0 8a4 4 0 1 0 0-8z M23 21v-2a4 4 0 0 0-3-3.87 M16 3.13a4 4 0 0 1 0 7.75',
    user: 'M20 21v-2a4 4 0 0 0-4-4H8a4 4 0 0 0-4 4v2 M12 3a4 4 0 1 0 0 8a4 4 0 1 0 0-8z',
    bot: 'M6 8h12a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2v-8a2 2 0 0 1 2-2z M12 8V4 M9 4h6 M9 13v2 M15 13v2 M2 14h2 M20 14h2',
    logout: 'M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4 M16 17l5-5-5-5 M21 12H9',
    lock: 'M5 11h14a2 2 0 0 1 2 2v7a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2z M7 11V7a5 5 0 0 1 10 0v4',
    send: 'M22 2L11 13 M22 2l-7 20-4-9-9-4 20-7z',
    back: 'M19 12H5 M12 19l-7-7 7-7',
    panel: 'M5 3h14a2 2 0 0 1 2 2v14a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z M15 3v18',
    globe: 'M12 2a10 10 0 1 0 0 20a10 10 0 1 0 0-20z M2 12h20 M12 2a15.3 15.3 0 0 1 4 10 15.3 15.3 0 0 1-4 10 15.3 15.3 0 0 1-4-10 15.3 15.3 0 0 1 4-10z',
    mail: 'M4 4h16c1.1 0 2 .9 2 2v12c0 1.1-.9 2-2 2H4c-1.1 0-2-.9-2-2V6c0-1.1.9-2 2-2z M22 6l-10 7L2 6',
    hash: 'M4 9h16 M4 15h16 M10 3L8 21 M16 3l-2 18',
    chat: 'M21 11.5a8.38 8.38 0 0 1-.9 3.8 8.5 8.5 0 0 1-7.6 4.7 8.38 8.38 0 0 1-3.8-.9L3 21l1.9-5.7a8.38 8.38 0 0 1-.9-3.8 8.5 8.5 0 0 1 4.7-7.6 8.38 8.38 0 0 1 3.8-.9h.5a8.48 8.48 0 0 1 8 8v.5z',
    x: 'M18 6L6 18 M6 6l12 12',
    check: 'M20 6L9 17l-5-5',
    chevron: 'M6 9l6 6 6-6',
    webhook: 'M10 13a5 5 0 0 0 7.54.54l3-3a5 5 0 0 0-7.07-7.07l-1.72 1.71 M14 11a5 5 0 0 0-7.54-.54l-3 3a5 5 0 0 0 7.07 7.07l1.71-1.71',
    plug: 'M12 22v-5 M9 8V2 M15 8V2 M18 8v5a4 4 0 0 1-4 4h-4a4 4 0 0 1-4-4V8z',
    radio: 'M4.9 19.1C1 15.2 1 8.8 4.9 4.9 M7.8 16.2c-2.3-2.3-2.3-6.1 0-8.5 M16.2 7.8c2.3 2.3 2.3 6.1 0 8.5 M19.1 4.9C23 8.8 23 15.1 19.1 19 M12 10a2 2 0 1 0 0 4a2 2 0 1 0 0-4z',
    transfer: 'M17 3l4 4-4 4 M3 7h18 M7 21l-4-4 4-4 M21 17H3',
    handback: 'M9 14L4 9l5-5 M4 9h10.5a5.5 5.5 0 0 1 0 11H11',
    resolve: 'M22 11.08V12a10 10 0 1 1-5.93-9.14 M22 4L12 14.01l-3-3',
    download: 'M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4 M7 10l5 5 5-5 M12 15V3',
    tag: 'M20.59 13.41l-7.17 7.17a2 2 0 0 1-2.83 0L2 12V2h10l8.59 8.59a2 2 0 0 1 0 2.82z M7 7h.01',
    unclaim: 'M16 21v-2a4 4 0 0 0-4-4H5a4 4 0 0 0-4 4v2 M8.5 3a4 4 0 1 0 0 8a4 4 0 1 0 0-8z M23 11h-6',
    join: 'M16 21v-2a4 4 0 0 0-4-4H5a4 4 0 0 0-4 4v2 M8.5 3a4 4 0 1 0 0 8a4 4 0 1 0 0-8z M20 8v6 M23 11h-6',
    hand: 'M18 11V6a2 2 0 0 0-4 0v5 M14 10V4a2 2 0 0 0-4 0v6 M10 10.5V6a2 2 0 0 0-4 0v8 M18 8a2 2 0 1 1 4 0v6a8 8 0 0 1-8 8h-2c-2.8 0-4.5-.86-5.99-2.34l-3.6-3.6a2 2 0 0 1 2.83-2.82L7 15',
    copy: 'M9 9h11a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2H11a2 2 0 0 1-2-2v-11a2 2 0 0 1 2-2z M5 15H4a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2h9a2 2 0 0 1 2 2v1',
    plus: 'M12 5v14 M5 12h14',
    refresh: 'M23 4v6h-6 M1 20v-6h6 M3.51 9a9 9 0 0 1 14.85-3.36L23 10 M1 14l4.64 4.36A9 9 0 0 0 20.49 15',
    clock: 'M12 2a10 10 0 1 0 0 20a10 10 0 1 0 0-20z M12 6v6l4 2',
    bell: 'M18 8A6 6 0 0 0 6 8c0 7-3 9-3 9h18s-3-2-3-9 M13.73 21a2 2 0 0 1-3.46 0',
    alert: 'M10.29 3.86L1.82 18a2 2 0 0 0 1.71 3h16.94a2 2 0 0 0 1.71-3L13.71 3.86a2 2 0 0 0-3.42 0z M12 9v4 M12 17h.01',
    info: 'M12 2a10 10 0 1 0 0 20a10 10 0 1 0 0-20z M12 16v-4 M12 8h.01',
    arrowDown: 'M12 5v14 M19 12l-7 7-7-7',
    more: 'M12 11a1 1 0 1 0 0 2a1 1 0 1 0 0-2z M19 11a1 1 0 1 0 0 2a1 1 0 1 0 0-2z M5 11a1 1 0 1 0 0 2a1 1 0 1 0 0-2z',
    tasks: 'M9 11l3 3L22 4 M21 12v7a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h11',
    book: 'M2 3h6a4 4 0 0 1 4 4v14a3 3 0 0 0-3-3H2z M22 3h-6a4 4 0 0 0-4 4v14a3 3 0 0 1 3-3h7z',
    layers: 'M12 2L2 7l10 5 10-5-10-5z M2 17l10 5 10-5 M2 12l10 5 10-5',
    arrowUp: 'M12 19V5 M5 12l7-7 7 7',
    trash: 'M3 6h18 M19 6v14a2 2 0 0 1-2 2H7a2 2 0 0 1-2-2V6 M8 6V4a2 2 0 0 1 2-2h4a2 2 0 0 1 2 2v2',
    edit: 'M11 4H4a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h14a2 2 0 0 0 2-2v-7 M18.5 2.5a2.12 2.12 0 0 1 3 3L12 15l-4 1 1-4 9.5-9.5z',
    search: 'M11 3a8 8 0 1 0 0 16a8 8 0 1 0 0-16z M21 21l-4.35-4.35',
  };

  function icon(name, cls) {
    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('fill', 'none');
    svg.setAttribute('stroke', 'currentColor');
    svg.setAttribute('stroke-width', '2');
    svg.setAttribute('stroke-linecap', 'round');
    svg.setAttribute('stroke-linejoin', 'round');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    svg.setAttribute('class', 'icon' + (cls ? ' ' + cls : ''));
    const p = document.createElementNS(SVG_NS, 'path');
    p.setAttribute('d', ICONS[name] || ICONS.info);
    svg.appendChild(p);
    return svg;
  }

  let logoCount = 0;

  /** The Baton mark: an indigo tile with a relay baton passing between two hands. */
  function logo(size) {
    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('viewBox', '0 0 32 32');
    svg.setAttribute('width', String(size || 32));
    svg.setAttribute('height', String(size || 32));
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('class', 'logo-mark');
    const add = (tag, attrs) => {
      const el = document.createElementNS(SVG_NS, tag);
      for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
      svg.appendChild(el);
      return el;
    };
    const defs = add('defs', {});
    const gid = 'baton-g' + (++logoCount);
    const grad = document.createElementNS(SVG_NS, 'linearGradient');
    grad.setAttribute('id', gid);
    grad.setAttribute('x1', '0');
    grad.setAttribute('y1', '0');
    grad.setAttribute('x2', '1');
    grad.setAttribute('y2', '1');
    const s1 = document.createElementNS(SVG_NS, 'stop');
    s1.setAttribute('offset', '0');
    s1.setAttribute('stop-color', '#6366f1');
    const s2 = document.createElementNS(SVG_NS, 'stop');
    s2.setAttribute('offset', '1');
    s2.setAttribute('stop-color', '#3730a3');
    grad.appendChild(s1);
    grad.appendChild(s2);
    defs.appendChild(grad);
    add('rect', { x: '0', y: '0', width: '32', height: '32', rx: '9', fill: 'url(#' + gid + ')' });
    add('rect', { x: '6', y: '13.5', width: '20', height: '5', rx: '2.5', fill: '#ffffff', transform: 'rotate(-35 16 16)' });
    add('circle', { cx: '9.3', cy: '20.8', r: '3.2', fill: '#5eead4' });
    add('circle', { cx: '22.7', cy: '11.2', r: '3.2', fill: '#c7d2fe' });
    return svg;
  }

  // ---------------------------------------------------------------------------
  // Formatting
  // ---------------------------------------------------------------------------

  const STATUSES = ['bot', 'waiting', 'active', 'resolved'];
  const STATUS_LABEL = { bot: 'Bot', waiting: 'Waiting', active: 'Active', resolved: 'Resolved' };
  const CHANNELS = {
    web: { label: 'Web chat', icon: 'globe' },
    email: { label: 'Email', icon: 'mail' },
    slack: { label: 'Slack', icon: 'hash' },
    discord: { label: 'Discord', icon: 'chat' },
    telegram: { label: 'Telegram', icon: 'send' },
  };
  const EVENT_TYPES = [
    'conversation.started', 'conversation.escalated', 'conversation.claimed', 'conversation.released',
    'conversation.unclaimed', 'conversation.transferred', 'conversation.resolved', 'conversation.reopened',
    'conversation.abandoned', 'message.created',
  ];
  const ROLES = ['owner', 'admin', 'responder', 'viewer'];
  const PRESENCES = ['online', 'away', 'offline'];

  function channelInfo(kind) {
    return CHANNELS[kind] || { label: words(kind || 'unknown'), icon: 'chat' };
  }

  function words(code) {
    const s = String(code || '').replace(/^plugin:/, 'plugin ').replace(/[_.:-]+/g, ' ').trim();
    return s ? s.charAt(0).toUpperCase() + s.slice(1) : '';
  }

  function reasonLabel(reason) {
    if (!reason) return '';
    if (String(reason).startsWith('plugin:')) return 'Plugin: ' + String(reason).slice(7);
    return words(reason);
  }

  function shortId(id) {
    const s = String(id || '');
    return s.replace(/[^A-Za-z0-9]/g, '').slice(-4).toUpperCase() || '????';
  }

  function contactName(c) {
    const ct = (c && c.contact) || {};
    if (ct.name && String(ct.name).trim()) return String(ct.name);
    if (ct.email) return String(ct.email);
    return 'Visitor #' + shortId(ct.id || (c && c.id));
  }

  function initials(name) {
    const parts = String(name || '?').replace(/[#@].*$/, '').trim().split(/\s+/).filter(Boolean);
    if (!parts.length) return '?';
    const a = parts[0].charAt(0);
    const b = parts.length > 1 ? parts[parts.length - 1].charAt(0) : '';
    return (a + b).toUpperCase();
  }

  function hue(key) {
    let x = 0;
    const s = String(key || '');
    for (let i = 0; i < s.length; i++) x = (x * 31 + s.charCodeAt(i)) >>> 0;
    return 'hue-' + (x % 8);
  }

  function avatar(name, key, cls) {
    return h('span', { class: 'avatar ' + hue(key || name) + (cls ? ' ' + cls : ''), 'aria-hidden': 'true' }, initials(name));
  }

  function ts(v) {
    const t = v ? Date.parse(v) : NaN;
    return Number.isFinite(t) ? t : 0;
  }

  function ago(v) {
    const t = ts(v);
    if (!t) return '';
    const s = (Date.now() - t) / 1000;
    if (s < 45) return 'now';
    if (s < 3600) return Math.max(1, Math.round(s / 60)) + 'm';
    if (s < 86400) return Math.round(s / 3600) + 'h';
    if (s < 7 * 86400) return Math.round(s / 86400) + 'd';
    return new Date(t).toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
  }

  const rtf = (typeof Intl !== 'undefined' && Intl.RelativeTimeFormat) ? new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' }) : null;

  function agoLong(v) {
    const t = ts(v);
    if (!t) return '';
    const s = (t - Date.now()) / 1000;
    const a = Math.abs(s);
    if (a < 45) return 'just now';
    if (!rtf) return ago(v) + ' ago';
    if (a < 3600) return rtf.format(Math.round(s / 60), 'minute');
    if (a < 86400) return rtf.format(Math.round(s / 3600), 'hour');
    return rtf.format(Math.round(s / 86400), 'day');
  }

  function clock(v) {
    const t = ts(v);
    return t ? new Date(t).toLocaleTimeString(undefined, { hour: 'numeric', minute: '2-digit' }) : '';
  }

  function fullDate(v) {
    const t = ts(v);
    return t ? new Date(t).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' }) : '—';
  }

  function dayKey(v) {
    const d = new Date(ts(v));
    return d.getFullYear() + '-' + d.getMonth() + '-' + d.getDate();
  }

  function dayLabel(v) {
    const d = new Date(ts(v));
    const today = new Date();
    const yest = new Date();
    yest.setDate(today.getDate() - 1);
    if (dayKey(d) === dayKey(today)) return 'Today';
    if (dayKey(d) === dayKey(yest)) return 'Yesterday';
    const opts = { weekday: 'long', month: 'long', day: 'numeric' };
    if (d.getFullYear() !== today.getFullYear()) opts.year = 'numeric';
    return d.toLocaleDateString(undefined, opts);
  }

  const DURATION_UNITS = [[86400, 'd'], [3600, 'h'], [60, 'min'], [1, 's']];

  /** Seconds in human units, the two largest that apply: "2 min 5 s", "1 h 20 min". */
  function duration(sec) {
    if (sec === null || sec === undefined || sec === '' || !Number.isFinite(Number(sec))) return '—';
    const s = Math.round(Number(sec));
    if (s < 1) return Number(sec) > 0 ? '< 1 s' : '0 s';
    const i = DURATION_UNITS.findIndex(([n]) => s >= n);
    const [size, unit] = DURATION_UNITS[i];
    const next = DURATION_UNITS[i + 1];
    const rest = next ? Math.floor((s % size) / next[0]) : 0;
    return Math.floor(s / size) + ' ' + unit + (rest ? ' ' + rest + ' ' + next[1] : '');
  }

  /** A settings duration (seconds, or text such as "500ms") as short text for a form: 900 → "15m". */
  function durationText(v) {
    if (typeof v === 'string') return v;
    const s = Number(v);
    if (!Number.isFinite(s) || s <= 0) return '0';
    for (const [size, unit] of [[86400, 'd'], [3600, 'h'], [60, 'm']]) {
      if (s % size === 0) return s / size + unit;
    }
    return String(s);
  }

  /** Reads a duration typed in a form: bare digits are seconds, anything else goes to the server as text. */
  function durationValue(text) {
    const t = String(text || '').trim();
    return /^\d+$/.test(t) ? Number(t) : t;
  }

  function commaList(text) {
    return String(text || '').split(',').map((x) => x.trim()).filter(Boolean);
  }

  function lineList(text) {
    return String(text || '').split('\n').map((x) => x.trim()).filter(Boolean);
  }

  /** Calls `fn` once things have been quiet for `ms`. */
  function debounce(fn, ms) {
    let timer = 0;
    return () => {
      clearTimeout(timer);
      timer = setTimeout(fn, ms);
    };
  }

  // ---------------------------------------------------------------------------
  // HTTP
  // ---------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message, body) {
      super(message || 'Something went wrong');
      this.status = status;
      this.code = code || 'error';
      this.body = body || null;
    }
  }

  let csrfMemo = '';

  function csrfToken() {
    for (const part of document.cookie.split(';')) {
      const i = part.indexOf('=');
      if (i < 0) continue;
      if (part.slice(0, i).trim() === 'baton_csrf') {
        try {
          return decodeURIComponent(part.slice(i + 1).trim());
        } catch (_) {
          return part.slice(i + 1).trim();
        }
      }
    }
    return csrfMemo;
  }

  async function api(method, path, body, opts) {
    const o = opts || {};
    const headers = { Accept: 'application/json' };
    const init = { method, credentials: 'same-origin', headers, cache: 'no-store' };
    if (method !== 'GET' && method !== 'HEAD') {
      headers['Content-Type'] = 'application/json';
      headers['X-CSRF-Token'] = csrfToken();
      if (body !== undefined) init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (_) {
      throw new ApiError(0, 'network', 'Cannot reach the Baton server. Check your connection.');
    }
    let data = null;
    if (res.status !== 204) {
      const text = await res.text().catch(() => '');
      if (text) {
        try {
          data = JSON.parse(text);
        } catch (_) {
          data = null;
        }
      }
    }
    if (res.ok) return data;
    const err = (data && data.error) || {};
    const message = err.message || defaultMessage(res.status);
    const e = new ApiError(res.status, err.code || 'http_' + res.status, message, err);
    if (res.status === 401 && !o.allow401) signedOut();
    throw e;
  }

  function defaultMessage(status) {
    if (status === 401) return 'Your session has ended. Please sign in again.';
    if (status === 403) return 'You do not have permission to do that.';
    if (status === 404) return 'Not found (this server may not support it yet).';
    if (status === 405) return 'This server does not support that yet.';
    if (status === 429) return 'Too many attempts. Please wait a moment and try again.';
    if (status >= 500) return 'The server had a problem (' + status + '). Please try again.';
    return 'Request failed (' + status + ').';
  }

  const enc = encodeURIComponent;

  // ---------------------------------------------------------------------------
  // Toasts
  // ---------------------------------------------------------------------------

  const toastsEl = document.getElementById('toasts');

  function toast(message, kind, action) {
    if (!toastsEl) return;
    const k = kind || 'error';
    const el = h('div', { class: 'toast toast--' + k, role: k === 'error' ? 'alert' : 'status' },
      icon(k === 'error' ? 'alert' : k === 'success' ? 'check' : 'bell', 'toast-icon'),
      h('div', { class: 'toast-text', text: message }));
    if (action) {
      el.appendChild(h('button', {
        class: 'toast-action', type: 'button', text: action.label,
        onclick: () => { dismiss(); action.run(); },
      }));
    }
    const close = h('button', { class: 'toast-close', type: 'button', 'aria-label': 'Dismiss', onclick: () => dismiss() }, icon('x'));
    el.appendChild(close);
    toastsEl.appendChild(el);
    while (toastsEl.children.length > 4) toastsEl.removeChild(toastsEl.firstChild);
    let gone = false;
    function dismiss() {
      if (gone) return;
      gone = true;
      el.classList.add('toast--out');
      setTimeout(() => el.remove(), 200);
    }
    setTimeout(dismiss, k === 'error' ? 7000 : action ? 9000 : 4000);
  }

  function report(e) {
    if (e && e.status === 401) return;
    toast((e && e.message) || 'Something went wrong');
  }

  // ---------------------------------------------------------------------------
  // State
  // ---------------------------------------------------------------------------

  const store = {
    get(k, d) {
      try {
        const v = localStorage.getItem('baton.inbox.' + k);
        return v === null ? d : v;
      } catch (_) {
        return d;
      }
    },
    set(k, v) {
      try {
        localStorage.setItem('baton.inbox.' + k, v);
      } catch (_) { /* private mode */ }
    },
  };

  const LIST_LIMIT = 200;

  const S = {
    me: null,
    scope: ['mine', 'unassigned', 'all'].includes(store.get('scope', 'all')) ? store.get('scope', 'all') : 'all',
    tab: 'waiting',
    convs: new Map(),
    capped: {},
    loaded: false,
    listGen: 0,
    previews: new Map(),
    fresh: new Set(),
    cur: null,
    drafts: new Map(),
    agents: null,
    ws: null,
    wsRetry: 0,
    wsTimer: 0,
    wsEverOpened: false,
    wsLive: false,
    view: null,
    contactOpen: false,
    notes: { list: [], unread: 0, loaded: false },
    taskScope: store.get('taskScope', 'me') === 'any' ? 'any' : 'me',
    taskDone: store.get('taskDone', '') === '1',
    departments: null, // a promise of the configured departments, fetched once
  };

  const isAdmin = () => !!S.me && (S.me.role === 'owner' || S.me.role === 'admin');
  const canRespond = () => !!S.me && S.me.role !== 'viewer';

  function inScope(c) {
    if (S.scope === 'mine') return !!c.assignee && !!S.me && c.assignee.id === S.me.id;
    if (S.scope === 'unassigned') return !c.assignee;
    return true;
  }

  function listOf(status) {
    const out = [];
    for (const c of S.convs.values()) if (c.status === status && inScope(c)) out.push(c);
    out.sort((a, b) => ts(b.updated_at) - ts(a.updated_at));
    return out;
  }

  function upsert(c) {
    if (!c || !c.id) return;
    const old = S.convs.get(c.id);
    if (old && ts(old.updated_at) > ts(c.updated_at)) return;
    S.convs.set(c.id, c);
    if (c.status !== 'waiting') S.fresh.delete(c.id);
  }

  function unreadOf(c) {
    if (S.cur && S.cur.id === c.id && document.visibilityState === 'visible') return 0;
    return Number(c.unread) || 0;
  }

  // ---------------------------------------------------------------------------
  // Boot, sign-in, sign-out
  // ---------------------------------------------------------------------------

  const app = document.getElementById('app');

  async function boot() {
    try {
      const res = await api('GET', '/api/v1/me', undefined, { allow401: true });
      S.me = res.user;
      start();
    } catch (e) {
      if (e.status === 401) showLogin();
      else showFatal(e.message);
    }
  }

  function showFatal(message) {
    app.className = 'fatal';
    app.removeAttribute('aria-busy');
    clear(app).appendChild(h('div', { class: 'login-wrap' },
      h('div', { class: 'login-card' },
        h('div', { class: 'login-brand' }, logo(40), h('span', { class: 'login-brand-name', text: 'Baton' })),
        h('h1', { class: 'login-title', text: 'The inbox could not load' }),
        h('p', { class: 'login-sub', text: message }),
        h('button', { class: 'btn btn-primary btn-block', type: 'button', text: 'Try again', onclick: () => location.reload() }))));
  }

  function showLogin() {
    stopLive();
    S.me = null;
    S.view = null;
    document.title = 'Sign in · Baton Inbox';
    app.className = 'login';
    app.removeAttribute('aria-busy');
    const errorLine = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const email = h('input', {
      id: 'login-email', 'data-testid': 'login-email', type: 'email', name: 'email', autocomplete: 'username',
      required: true, placeholder: 'you@company.com', class: 'input', value: store.get('email', ''),
    });
    const password = h('input', {
      id: 'login-password', 'data-testid': 'login-password', type: 'password', name: 'password',
      autocomplete: 'current-password', required: true, placeholder: '••••••••', class: 'input',
    });
    const submit = h('button', { class: 'btn btn-primary btn-block btn-lg', type: 'submit', 'data-testid': 'login-submit', text: 'Sign in' });
    const form = h('form', { class: 'login-form', novalidate: true },
      h('div', { class: 'field' }, h('label', { for: 'login-email', text: 'Email' }), email),
      h('div', { class: 'field' }, h('label', { for: 'login-password', text: 'Password' }), password),
      errorLine,
      submit);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      errorLine.hidden = true;
      if (!email.value.trim() || !password.value) {
        errorLine.textContent = 'Enter your email and password.';
        errorLine.hidden = false;
        (email.value.trim() ? password : email).focus();
        return;
      }
      submit.disabled = true;
      submit.textContent = 'Signing in…';
      try {
        const res = await api('POST', '/api/v1/auth/login', { email: email.value.trim(), password: password.value }, { allow401: true });
        if (res && res.csrf_token) csrfMemo = res.csrf_token;
        store.set('email', email.value.trim());
        S.me = res.user;
        try {
          const p = await api('PUT', '/api/v1/me/presence', { presence: 'online' });
          if (p && p.user) S.me = p.user;
        } catch (_) { /* presence is best effort */ }
        if (!location.hash || location.hash === '#' || location.hash.startsWith('#/login')) location.hash = '#/';
        start();
      } catch (e) {
        submit.disabled = false;
        submit.textContent = 'Sign in';
        errorLine.textContent = e.status === 429
          ? (e.message && e.code !== 'http_429' ? e.message : 'Too many sign-in attempts. Please wait a minute and try again.')
          : e.message;
        errorLine.hidden = false;
        password.select();
        password.focus();
      }
    });
    clear(app).appendChild(h('main', { class: 'login-wrap' },
      h('div', { class: 'login-card' },
        h('div', { class: 'login-brand' }, logo(40), h('span', { class: 'login-brand-name', text: 'Baton' })),
        h('h1', { class: 'login-title', text: 'Sign in to your inbox' }),
        h('p', { class: 'login-sub', text: 'Pick up conversations the moment your bot hands them over.' }),
        form),
      h('p', { class: 'login-foot', text: 'Baton · self-hosted bot platform' })));
    setTimeout(() => (email.value ? password : email).focus(), 0);
  }

  function signedOut() {
    if (!S.me) return;
    toast('Your session has ended. Please sign in again.', 'info');
    showLogin();
  }

  async function signOut() {
    try {
      await api('PUT', '/api/v1/me/presence', { presence: 'offline' });
    } catch (_) { /* ignore */ }
    try {
      await api('POST', '/api/v1/auth/logout', {}, { allow401: true });
    } catch (_) { /* ignore */ }
    S.convs.clear();
    S.previews.clear();
    S.fresh.clear();
    S.cur = null;
    S.agents = null;
    S.departments = null;
    S.notes = { list: [], unread: 0, loaded: false };
    S.loaded = false;
    location.hash = '#/';
    showLogin();
  }

  function start() {
    app.className = 'app';
    app.removeAttribute('aria-busy');
    S.view = null;
    buildShell();
    connectWs();
    refreshLists();
    loadNotifications();
    route();
  }

  // ---------------------------------------------------------------------------
  // Shell: rail + main
  // ---------------------------------------------------------------------------

  const R = {}; // references into the shell

  function buildShell() {
    clear(app);
    R.main = h('main', { class: 'main', id: 'main' });
    R.rail = h('nav', { class: 'rail', 'aria-label': 'Main' });
    app.appendChild(h('a', { class: 'skip-link', href: '#main', text: 'Skip to content', onclick: (e) => { e.preventDefault(); R.main.focus(); } }));
    app.appendChild(R.rail);
    app.appendChild(R.main);
    R.main.setAttribute('tabindex', '-1');
    renderRail();
  }

  function railLink(href, name, label, key, badge) {
    return h('a', { class: 'rail-link', href, 'data-nav': key, 'data-testid': 'nav-' + key, title: label },
      icon(name), h('span', { class: 'rail-label', text: label }), badge || null);
  }

  function renderRail() {
    if (!R.rail) return;
    clear(R.rail);
    R.railBadge = h('span', { class: 'rail-badge', hidden: true });
    R.rail.appendChild(h('a', { class: 'rail-logo', href: '#/', 'aria-label': 'Baton Inbox' }, logo(34)));
    const links = h('div', { class: 'rail-links' },
      railLink('#/', 'inbox', 'Inbox', 'inbox', R.railBadge),
      railLink('#/tasks', 'tasks', 'Tasks', 'tasks'),
      railLink('#/reports', 'chart', 'Reports', 'reports'),
      isAdmin() ? railLink('#/admin/users', 'settings', 'Admin', 'admin') : null);
    R.rail.appendChild(links);
    R.rail.appendChild(h('div', { class: 'rail-spacer' }));
    R.bellBadge = h('span', { class: 'rail-badge rail-badge--notes', 'data-testid': 'notifications-unread', hidden: true });
    R.bell = h('button', {
      class: 'rail-link rail-bell', type: 'button', 'data-testid': 'notifications-bell', 'aria-haspopup': 'dialog',
      'aria-expanded': 'false', title: 'Notifications', onclick: (e) => { e.stopPropagation(); toggleNotifications(); },
    }, icon('bell'), h('span', { class: 'rail-label', text: 'Alerts' }), R.bellBadge);
    R.rail.appendChild(h('div', { class: 'rail-bell-wrap' }, R.bell));
    R.meBtn = h('button', {
      class: 'rail-me', type: 'button', 'aria-haspopup': 'menu', 'aria-expanded': 'false',
      title: S.me.name + ' — ' + S.me.presence, onclick: (e) => { e.stopPropagation(); toggleMeMenu(); },
    },
    h('span', { class: 'rail-me-avatar' }, avatar(S.me.name, S.me.id), h('span', { class: 'presence-dot presence-' + S.me.presence, 'aria-hidden': 'true' })),
    h('span', { class: 'rail-me-name', text: S.me.name.split(/\s+/)[0] }),
    h('span', { class: 'sr-only', text: 'Your status: ' + S.me.presence }));
    R.rail.appendChild(h('div', { class: 'rail-me-wrap' }, R.meBtn));
    markNav();
    updateCounts();
    updateBell();
  }

  function markNav() {
    if (!R.rail) return;
    const key = ['admin', 'reports', 'tasks'].includes(S.view) ? S.view : 'inbox';
    for (const a of R.rail.querySelectorAll('[data-nav]')) {
      if (a.getAttribute('data-nav') === key) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
  }

  // Generic popover handling: one open at a time, Escape or outside click closes.
  let openPopover = null;

  function closePopover(focusBack) {
    if (!openPopover) return;
    const p = openPopover;
    openPopover = null;
    p.el.remove();
    if (p.anchor) {
      p.anchor.setAttribute('aria-expanded', 'false');
      if (focusBack) p.anchor.focus();
    }
  }

  function showPopover(anchor, el, cls) {
    closePopover();
    el.classList.add('popover');
    if (cls) el.classList.add(cls);
    document.body.appendChild(el);
    const r = anchor.getBoundingClientRect();
    const w = el.offsetWidth;
    const hgt = el.offsetHeight;
    let left = r.left;
    let top = r.bottom + 6;
    if (cls === 'popover--up') {
      left = r.right + 8;
      top = r.bottom - hgt;
      if (left + w > window.innerWidth - 8) {
        left = Math.max(8, r.left);
        top = r.top - hgt - 8;
      }
    } else if (left + w > window.innerWidth - 8) {
      left = Math.max(8, r.right - w);
    }
    left = Math.max(8, Math.min(left, window.innerWidth - w - 8));
    if (top + hgt > window.innerHeight - 8) top = Math.max(8, r.top - hgt - 6);
    el.style.left = Math.round(left) + 'px';
    el.style.top = Math.round(Math.max(8, top)) + 'px';
    anchor.setAttribute('aria-expanded', 'true');
    openPopover = { el, anchor };
    const first = el.querySelector('button:not([disabled]), input, select, textarea, a[href]');
    if (first) first.focus();
  }

  document.addEventListener('mousedown', (e) => {
    if (openPopover && !openPopover.el.contains(e.target) && !openPopover.anchor.contains(e.target)) closePopover();
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      if (openPopover) {
        e.preventDefault();
        closePopover(true);
      } else if (S.contactOpen && S.view === 'inbox') {
        toggleContact(false);
      }
    }
  });
  window.addEventListener('resize', () => closePopover());

  function toggleMeMenu() {
    if (openPopover && openPopover.anchor === R.meBtn) {
      closePopover(true);
      return;
    }
    const options = PRESENCES.map((p) => h('button', {
      class: 'menu-item', type: 'button', role: 'menuitemradio', 'aria-checked': String(S.me.presence === p),
      onclick: () => setPresence(p),
    },
    h('span', { class: 'presence-dot presence-' + p, 'aria-hidden': 'true' }),
    h('span', { class: 'menu-item-label', text: words(p) }),
    S.me.presence === p ? icon('check', 'menu-check') : null));
    const menu = h('div', { role: 'menu', 'aria-label': 'Your status' },
      h('div', { class: 'menu-head' },
        avatar(S.me.name, S.me.id, 'avatar--md'),
        h('div', { class: 'menu-head-text' },
          h('div', { class: 'menu-head-name', text: S.me.name }),
          h('div', { class: 'menu-head-sub', text: S.me.email + ' · ' + words(S.me.role) }))),
      h('div', { class: 'menu-label', text: 'Status' }),
      options,
      h('div', { class: 'menu-sep', role: 'separator' }),
      S.me.notifications ? h('button', {
        class: 'menu-item', type: 'button', role: 'menuitem', 'data-testid': 'my-notifications-open',
        onclick: () => { closePopover(); toggleNotifications(true); },
      }, icon('bell', 'menu-icon'), h('span', { class: 'menu-item-label', text: 'My notifications' })) : null,
      h('button', { class: 'menu-item', type: 'button', role: 'menuitem', onclick: () => { closePopover(); signOut(); } },
        icon('logout', 'menu-icon'), h('span', { class: 'menu-item-label', text: 'Sign out' })));
    showPopover(R.meBtn, menu, 'popover--up');
  }

  async function setPresence(p) {
    closePopover(true);
    try {
      const res = await api('PUT', '/api/v1/me/presence', { presence: p });
      S.me = (res && res.user) || Object.assign({}, S.me, { presence: p });
      renderRail();
      toast('You are now ' + p + '.', 'success');
      if (S.agents) S.agents = null;
    } catch (e) {
      report(e);
    }
  }

  // ---------------------------------------------------------------------------
  // Routing
  // ---------------------------------------------------------------------------

  function parseRoute() {
    const hash = (location.hash || '#/').replace(/^#/, '');
    const parts = hash.split('/').filter(Boolean);
    if (parts[0] === 'c' && parts[1]) return { view: 'inbox', conv: decodeURIComponent(parts[1]) };
    if (parts[0] === 'admin') return { view: 'admin', page: parts[1] || 'users' };
    if (parts[0] === 'reports') return { view: 'reports' };
    if (parts[0] === 'tasks') return { view: 'tasks' };
    return { view: 'inbox', conv: null };
  }

  window.addEventListener('hashchange', () => {
    if (S.me) route();
  });

  function route() {
    closePopover();
    const r = parseRoute();
    if (r.view === 'admin' && !isAdmin()) {
      location.replace('#/');
      return;
    }
    if (r.view === 'inbox') {
      if (S.view !== 'inbox') buildInbox();
      S.view = 'inbox';
      openConversation(r.conv);
    } else {
      S.cur = null;
      app.classList.remove('in-conv');
      S.view = r.view;
      R.inbox = null;
      if (r.view === 'admin') renderAdmin(r.page);
      else if (r.view === 'tasks') renderTasks();
      else renderReports();
    }
    app.setAttribute('data-view', S.view);
    markNav();
    updateCounts();
  }

  // ---------------------------------------------------------------------------
  // Conversation lists
  // ---------------------------------------------------------------------------

  async function refreshLists() {
    if (!S.me) return;
    const gen = ++S.listGen;
    const assignee = S.scope === 'mine' ? 'me' : S.scope === 'unassigned' ? 'unassigned' : 'any';
    const results = await Promise.allSettled(STATUSES.map((st) =>
      api('GET', '/api/v1/conversations?status=' + st + '&assignee=' + assignee + '&limit=' + LIST_LIMIT)));
    if (gen !== S.listGen || !S.me) return;
    const next = new Map();
    let failed = null;
    results.forEach((r, i) => {
      const st = STATUSES[i];
      if (r.status === 'fulfilled') {
        const list = (r.value && r.value.conversations) || [];
        S.capped[st] = list.length >= LIST_LIMIT;
        for (const c of list) {
          next.set(c.id, c);
          if (c.last_message) setPreview(c.id, c.last_message);
        }
      } else {
        failed = r.reason;
        // Keep what we had for a status that failed to load.
        for (const c of S.convs.values()) if (c.status === st) next.set(c.id, c);
      }
    });
    if (S.cur && S.cur.conv && !next.has(S.cur.id)) next.set(S.cur.id, S.cur.conv);
    S.convs = next;
    for (const id of Array.from(S.fresh)) {
      const c = next.get(id);
      if (!c || c.status !== 'waiting') S.fresh.delete(id);
    }
    S.loaded = true;
    if (failed && failed.status !== 401) toast('Could not load every list: ' + failed.message);
    renderList();
    updateCounts();
  }

  function buildInbox() {
    clear(R.main);
    R.inbox = {};
    const I = R.inbox;
    I.root = h('div', { class: 'inbox' });
    // List column
    I.tabs = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Conversation status' });
    I.scope = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Whose conversations' });
    I.conn = h('div', { class: 'conn-banner', role: 'status', hidden: true });
    I.list = h('div', { class: 'conv-list', id: 'conv-list', role: 'tabpanel' });
    I.listCol = h('section', { class: 'list-col', 'aria-label': 'Conversations' },
      h('header', { class: 'list-head' },
        h('div', { class: 'list-title-row' },
          h('h1', { class: 'list-title', text: 'Inbox' }),
          I.scope),
        I.tabs),
      I.conn,
      I.list);
    // Conversation + contact columns
    I.convCol = h('section', { class: 'conv-col', 'aria-label': 'Conversation' });
    I.contactCol = h('aside', { class: 'contact-col', 'aria-label': 'Contact details' });
    I.scrim = h('div', { class: 'contact-scrim', onclick: () => toggleContact(false) });
    append(I.root, [I.listCol, I.convCol, I.scrim, I.contactCol]);
    R.main.appendChild(I.root);
    renderScope();
    renderTabs();
    renderList();
    renderConnBanner();
  }

  function renderScope() {
    const I = R.inbox;
    if (!I) return;
    clear(I.scope);
    for (const [key, label] of [['mine', 'Mine'], ['unassigned', 'Unassigned'], ['all', 'All']]) {
      I.scope.appendChild(h('button', {
        type: 'button', class: 'segmented-btn', 'aria-pressed': String(S.scope === key), 'data-scope': key, text: label,
        onclick: () => {
          if (S.scope === key) return;
          S.scope = key;
          store.set('scope', key);
          renderScope();
          renderList();
          updateCounts();
          refreshLists();
        },
      }));
    }
  }

  function renderTabs() {
    const I = R.inbox;
    if (!I) return;
    clear(I.tabs);
    I.tabBtns = {};
    for (const st of STATUSES) {
      const badge = h('span', { class: 'tab-count' + (st === 'waiting' ? ' tab-count--waiting' : ''), 'data-count': st });
      const btn = h('button', {
        type: 'button', role: 'tab', class: 'tab tab--' + st, id: 'tab-' + st, 'data-tab': st,
        'aria-selected': String(S.tab === st), 'aria-controls': 'conv-list', tabindex: S.tab === st ? '0' : '-1',
        onclick: () => selectTab(st),
        onkeydown: (e) => {
          const i = STATUSES.indexOf(st);
          let j = -1;
          if (e.key === 'ArrowRight') j = (i + 1) % STATUSES.length;
          if (e.key === 'ArrowLeft') j = (i + STATUSES.length - 1) % STATUSES.length;
          if (j >= 0) {
            e.preventDefault();
            selectTab(STATUSES[j]);
            I.tabBtns[STATUSES[j]].focus();
          }
        },
      }, h('span', { class: 'tab-label', text: STATUS_LABEL[st] }), badge);
      I.tabBtns[st] = btn;
      I.tabs.appendChild(btn);
    }
    I.list.setAttribute('aria-labelledby', 'tab-' + S.tab);
  }

  function selectTab(st) {
    S.tab = st;
    const I = R.inbox;
    if (!I) return;
    for (const s of STATUSES) {
      I.tabBtns[s].setAttribute('aria-selected', String(s === st));
      I.tabBtns[s].setAttribute('tabindex', s === st ? '0' : '-1');
    }
    I.list.setAttribute('aria-labelledby', 'tab-' + st);
    renderList();
  }

  function updateCounts() {
    const counts = {};
    for (const st of STATUSES) counts[st] = listOf(st).length;
    const I = R.inbox;
    if (I && I.tabs) {
      for (const st of STATUSES) {
        const b = I.tabs.querySelector('[data-count="' + st + '"]');
        if (!b) continue;
        const n = counts[st];
        b.textContent = S.capped[st] && n >= LIST_LIMIT ? LIST_LIMIT + '+' : String(n);
        b.classList.toggle('is-zero', n === 0);
        b.classList.toggle('is-fresh', st === 'waiting' && S.fresh.size > 0);
      }
    }
    if (R.railBadge) {
      const n = counts.waiting;
      R.railBadge.hidden = n === 0;
      R.railBadge.textContent = n > 99 ? '99+' : String(n);
      R.railBadge.setAttribute('aria-label', n + ' waiting');
    }
    if (S.view === 'inbox' && R.inbox && !S.cur && R.inbox.convCol) renderEmptyConv();
    const w = counts.waiting;
    document.title = S.me ? (w > 0 ? '(' + w + ') Baton Inbox' : 'Baton Inbox') : document.title;
  }

  let listTimer = 0;

  function scheduleListRender() {
    if (listTimer) return;
    listTimer = requestAnimationFrame(() => {
      listTimer = 0;
      renderList();
      updateCounts();
    });
  }

  const EMPTY = {
    bot: ['No bot conversations', 'Conversations the bot is handling show up here; switch on monitoring in the bot settings to follow them live.'],
    waiting: ['No one is waiting. Nice!', 'When the bot hands a visitor over, they land here — you will hear a chime.'],
    active: ['Nothing in progress', 'Conversations you and your team have claimed show up here.'],
    resolved: ['Nothing resolved yet', 'Resolved and handed-back conversations are kept here.'],
  };

  function renderList() {
    const I = R.inbox;
    if (!I) return;
    const list = listOf(S.tab);
    const focusedId = document.activeElement && I.list.contains(document.activeElement)
      ? document.activeElement.getAttribute('data-conversation-id') : null;
    clear(I.list);
    if (!S.loaded) {
      I.list.appendChild(h('div', { class: 'list-empty' }, h('div', { class: 'spinner', 'aria-hidden': 'true' }), h('p', { class: 'list-empty-sub', text: 'Loading conversations…' })));
      return;
    }
    if (!list.length) {
      const [title, sub] = EMPTY[S.tab];
      const scopeNote = S.scope === 'mine' ? ' (showing only yours)' : S.scope === 'unassigned' ? ' (showing unassigned)' : '';
      I.list.appendChild(h('div', { class: 'list-empty' },
        h('div', { class: 'list-empty-icon' }, icon(S.tab === 'waiting' ? 'check' : S.tab === 'bot' ? 'bot' : 'inbox')),
        h('p', { class: 'list-empty-title', text: title }),
        h('p', { class: 'list-empty-sub', text: sub + scopeNote })));
      return;
    }
    const ul = h('ul', { class: 'rows', role: 'list' });
    for (const c of list) ul.appendChild(h('li', null, rowNode(c)));
    I.list.appendChild(ul);
    if (focusedId) {
      const again = I.list.querySelector('[data-conversation-id="' + CSS.escape(focusedId) + '"]');
      if (again) again.focus();
    }
  }

  function rowNode(c) {
    const name = contactName(c);
    const ch = channelInfo(c.channel);
    const unread = unreadOf(c);
    const pv = S.previews.get(c.id);
    const selected = S.cur && S.cur.id === c.id;
    const cls = ['row'];
    if (selected) cls.push('is-selected');
    if (S.fresh.has(c.id)) cls.push('is-fresh');
    if (unread > 0) cls.push('has-unread');
    let previewText;
    if (pv) {
      const who = pv.sender === 'agent' ? (pv.mine ? 'You: ' : (pv.author ? pv.author + ': ' : 'Agent: '))
        : pv.sender === 'bot' ? 'Bot: ' : '';
      previewText = h('span', { class: 'row-preview' + (pv.internal ? ' is-note' : '') },
        pv.internal ? icon('lock', 'row-preview-icon') : null, who + pv.text.replace(/\s+/g, ' '));
    } else {
      previewText = h('span', { class: 'row-preview is-muted', text: c.status === 'waiting' ? 'Waiting for an agent' : ch.label + ' conversation' });
    }
    const chips = [];
    if (c.handover && c.handover.reason && c.status !== 'bot') {
      chips.push(h('span', { class: 'chip chip--reason chip--' + reasonTone(c.handover.reason), text: reasonLabel(c.handover.reason) }));
    }
    for (const t of (c.tags || []).slice(0, 3)) chips.push(h('span', { class: 'chip chip--tag', text: t }));
    if ((c.tags || []).length > 3) chips.push(h('span', { class: 'chip chip--tag', text: '+' + (c.tags.length - 3) }));
    const assignee = c.assignee
      ? h('span', { class: 'row-assignee', title: 'Assigned to ' + c.assignee.name }, avatar(c.assignee.name, c.assignee.id, 'avatar--xs'),
        h('span', { class: 'row-assignee-name', text: S.me && c.assignee.id === S.me.id ? 'You' : c.assignee.name }))
      : null;
    const timeRef = c.status === 'waiting' && c.escalated_at ? c.escalated_at : c.updated_at;
    return h('a', {
      class: cls.join(' '), href: '#/c/' + enc(c.id), 'data-testid': 'conversation-item', 'data-status': c.status,
      'data-conversation-id': c.id, 'aria-current': selected ? 'true' : null,
      'aria-label': name + ', ' + STATUS_LABEL[c.status] + (unread ? ', ' + unread + ' unread' : ''),
    },
    h('span', { class: 'row-avatar' }, avatar(name, (c.contact && c.contact.id) || c.id),
      h('span', { class: 'row-channel', title: ch.label }, icon(ch.icon))),
    h('span', { class: 'row-main' },
      h('span', { class: 'row-top' },
        h('span', { class: 'row-name', text: name }),
        h('time', { class: 'row-time', datetime: timeRef, 'data-ts': timeRef, title: fullDate(timeRef), text: ago(timeRef) })),
      h('span', { class: 'row-mid' }, previewText,
        unread > 0 ? h('span', { class: 'unread', 'aria-hidden': 'true', text: unread > 99 ? '99+' : String(unread) }) : null),
      (chips.length || assignee)
        ? h('span', { class: 'row-meta' }, h('span', { class: 'row-chips' }, chips), assignee)
        : null));
  }

  function reasonTone(reason) {
    const r = String(reason);
    if (r === 'visitor_request') return 'indigo';
    if (r === 'bot_failure' || r === 'failed_to_resolve' || r === 'frustration') return 'red';
    if (r === 'agent_takeover' || r === 'manual') return 'teal';
    return 'amber';
  }

  function setPreview(convId, m) {
    if (!m || !convId) return;
    const prev = S.previews.get(convId);
    if (prev && prev.seq > (m.seq || 0)) return;
    if (m.sender === 'system' && prev) return; // keep the last real message as the preview
    S.previews.set(convId, {
      text: String(m.text || ''),
      sender: m.sender,
      internal: !!m.internal,
      author: m.author && m.author.name,
      mine: !!(m.author && S.me && m.author.id === S.me.id),
      seq: m.seq || 0,
    });
  }

  // Keep relative times fresh.
  setInterval(() => {
    for (const t of document.querySelectorAll('.row-time[data-ts]')) t.textContent = ago(t.getAttribute('data-ts'));
  }, 30000);

  function renderConnBanner() {
    const I = R.inbox;
    if (!I || !I.conn) return;
    const down = !S.wsLive && (S.wsEverOpened || S.wsRetry >= 2);
    I.conn.hidden = !down;
    if (down) {
      clear(I.conn);
      append(I.conn, [h('span', { class: 'spinner spinner--sm', 'aria-hidden': 'true' }), 'Reconnecting to live updates…']);
    }
  }

  // ---------------------------------------------------------------------------
  // Live events (WebSocket)
  // ---------------------------------------------------------------------------

  function connectWs() {
    if (!S.me || S.ws) return;
    clearTimeout(S.wsTimer);
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/api/v1/events';
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (_) {
      scheduleReconnect();
      return;
    }
    S.ws = ws;
    ws.addEventListener('open', () => {
      if (S.ws !== ws) return;
      const again = S.wsEverOpened;
      S.wsEverOpened = true;
      S.wsLive = true;
      S.wsRetry = 0;
      renderConnBanner();
      if (again) {
        refreshLists();
        reloadCurrent();
        refreshAfterTransition();
        if (S.cur) refreshAfterHandover();
      }
    });
    ws.addEventListener('message', (e) => {
      let ev;
      try {
        ev = JSON.parse(e.data);
      } catch (_) {
        return;
      }
      try {
        handleEvent(ev);
      } catch (err) {
        console.error('baton inbox: event handling failed', err);
      }
    });
    ws.addEventListener('close', () => {
      if (S.ws !== ws) return;
      S.ws = null;
      S.wsLive = false;
      renderConnBanner();
      if (S.me) scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    clearTimeout(S.wsTimer);
    const base = Math.min(30000, 1000 * Math.pow(2, S.wsRetry));
    const delay = base / 2 + Math.random() * base / 2;
    S.wsRetry = Math.min(S.wsRetry + 1, 6);
    renderConnBanner();
    S.wsTimer = setTimeout(async () => {
      if (!S.me) return;
      if (S.wsRetry >= 3) {
        // Maybe the session expired: api() returns to the sign-in page on 401.
        try {
          await api('GET', '/api/v1/me');
        } catch (e) {
          if (e.status === 401) return;
        }
      }
      connectWs();
    }, delay);
  }

  function stopLive() {
    clearTimeout(S.wsTimer);
    const ws = S.ws;
    S.ws = null;
    S.wsLive = false;
    S.wsEverOpened = false;
    if (ws) {
      try {
        ws.close();
      } catch (_) { /* ignore */ }
    }
  }

  // Reconnect promptly when the network or the tab comes back.
  window.addEventListener('online', () => {
    if (S.me && !S.ws) {
      S.wsRetry = 0;
      connectWs();
    }
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && S.me) {
      if (!S.ws) {
        S.wsRetry = 0;
        connectWs();
      }
      if (S.cur) scheduleMarkRead();
      scheduleListRender();
    }
  });

  function handleEvent(ev) {
    if (!ev || typeof ev !== 'object') return;
    if (ev.type === 'lagged') {
      refreshLists();
      reloadCurrent();
      refreshAfterTransition();
      if (S.cur) refreshAfterHandover();
      return;
    }
    const d = ev.data || {};
    const c = d.conversation;
    const m = d.message;
    if (c) upsert(c);
    const convId = (m && m.conversation_id) || (c && c.id);
    if (m && convId) setPreview(convId, m);
    if (TRANSITIONS.has(ev.type)) {
      refreshAfterTransition();
      if (S.cur && convId === S.cur.id) refreshAfterHandover();
    }
    if (S.cur && convId === S.cur.id) {
      if (c) {
        const latest = S.convs.get(c.id) || c;
        const changed = !S.cur.conv || S.cur.conv.status !== latest.status
          || JSON.stringify(S.cur.conv.assignee) !== JSON.stringify(latest.assignee)
          || JSON.stringify(S.cur.conv.tags) !== JSON.stringify(latest.tags)
          || JSON.stringify(S.cur.conv.handover) !== JSON.stringify(latest.handover)
          || JSON.stringify(S.cur.conv.contact) !== JSON.stringify(latest.contact);
        S.cur.conv = latest;
        if (changed) refreshConvChrome();
      }
      if (m) {
        addMessage(m);
        scheduleMarkRead();
      }
    }
    if (ev.type === 'conversation.escalated' && c) {
      S.fresh.add(c.id);
      notifyHandover(c);
    } else if (ev.type === 'conversation.transferred' && c && c.assignee && S.me && c.assignee.id === S.me.id && c.status === 'active') {
      beep();
      if (!S.cur || S.cur.id !== c.id) {
        toast(contactName(c) + ' was transferred to you', 'info', {
          label: 'Open',
          run: () => {
            location.hash = '#/c/' + enc(c.id);
          },
        });
      }
    }
    scheduleListRender();
  }

  // --- notifications -----------------------------------------------------------

  let audioCtx = null;

  function unlockAudio() {
    try {
      const AC = window.AudioContext || window.webkitAudioContext;
      if (!AC) return;
      if (!audioCtx) audioCtx = new AC();
      if (audioCtx.state === 'suspended') audioCtx.resume().catch(() => {});
    } catch (_) {
      audioCtx = null;
    }
  }
  // Browsers only allow sound after a user gesture: prepare the audio context on the first one.
  document.addEventListener('pointerdown', unlockAudio, { once: true, capture: true });
  document.addEventListener('keydown', unlockAudio, { once: true, capture: true });

  function beep() {
    try {
      if (!audioCtx || audioCtx.state !== 'running') return;
      const t = audioCtx.currentTime;
      const tone = (freq, at, len) => {
        const o = audioCtx.createOscillator();
        const g = audioCtx.createGain();
        o.type = 'sine';
        o.frequency.setValueAtTime(freq, t + at);
        g.gain.setValueAtTime(0.0001, t + at);
        g.gain.exponentialRampToValueAtTime(0.18, t + at + 0.015);
        g.gain.exponentialRampToValueAtTime(0.0001, t + at + len);
        o.connect(g);
        g.connect(audioCtx.destination);
        o.start(t + at);
        o.stop(t + at + len + 0.02);
      };
      tone(880, 0, 0.16);
      tone(1318.5, 0.13, 0.26);
    } catch (_) { /* sound is a nicety */ }
  }

  function notifyHandover(c) {
    beep();
    const reason = c.handover && c.handover.reason ? ' (' + reasonLabel(c.handover.reason) + ')' : '';
    toast('New hand-over: ' + contactName(c) + reason, 'info', {
      label: 'Open',
      run: () => {
        location.hash = '#/c/' + enc(c.id);
      },
    });
    if (R.inbox && S.tab !== 'waiting' && R.inbox.tabBtns) R.inbox.tabBtns.waiting.classList.add('is-pulsing');
  }

  // --- notification centre --------------------------------------------------------

  // The transitions that create assignments, tasks and escalation notices.
  const TRANSITIONS = new Set(['conversation.escalated', 'conversation.claimed', 'conversation.transferred']);
  const NOTE_ICONS = { assigned: 'user', task: 'tasks', escalated: 'hand' };
  const NOTIFY_PREFS = [['assigned', 'A conversation is assigned'], ['task', 'A task is assigned']];

  // Transitions often come in bursts (escalated, then claimed by an assign action): reload once they settle.
  const refreshAfterTransition = debounce(() => {
    loadNotifications();
    if (R.reloadTasks) R.reloadTasks();
  }, 800);

  let notesGen = 0;

  async function loadNotifications() {
    if (!S.me) return;
    const my = ++notesGen;
    try {
      const res = await api('GET', '/api/v1/notifications');
      if (my !== notesGen || !S.me) return;
      S.notes = { list: (res && res.notifications) || [], unread: Number(res && res.unread) || 0, loaded: true };
    } catch (e) {
      if (my !== notesGen || !S.me) return;
      S.notes = Object.assign({}, S.notes, { loaded: true, error: e });
    }
    updateBell();
    renderNotificationList();
    if (notesOpen() && S.notes.unread > 0) markNotificationsRead();
  }

  function notesOpen() {
    return !!openPopover && !!R.bell && openPopover.anchor === R.bell;
  }

  function updateBell() {
    if (!R.bellBadge) return;
    const n = S.notes.unread;
    R.bellBadge.hidden = n === 0;
    R.bellBadge.textContent = n > 99 ? '99+' : String(n);
    R.bell.setAttribute('aria-label', n ? 'Alerts, ' + n + ' unread notifications' : 'Alerts');
  }

  async function markNotificationsRead() {
    S.notes.unread = 0;
    updateBell();
    try {
      await api('POST', '/api/v1/notifications/read');
    } catch (e) {
      report(e);
    }
  }

  /** Opens (or closes) the notification panel; `withSettings` opens it on the user's own settings. */
  function toggleNotifications(withSettings) {
    if (notesOpen()) {
      closePopover(true);
      return;
    }
    R.notesList = h('div', { class: 'notes-list' });
    const settings = myNotificationSettings();
    let settingsBtn = null;
    if (settings) {
      settings.hidden = !withSettings;
      settingsBtn = h('button', {
        class: 'btn btn-ghost btn-sm', type: 'button', 'aria-expanded': String(!!withSettings), 'aria-controls': settings.id,
        onclick: () => {
          settings.hidden = !settings.hidden;
          settingsBtn.setAttribute('aria-expanded', String(!settings.hidden));
        },
      }, icon('settings', 'icon--sm'), 'Settings');
    }
    const panel = h('div', { class: 'notes-panel', role: 'dialog', 'aria-label': 'Notifications', 'data-testid': 'notifications-panel' },
      h('div', { class: 'notes-head' }, h('h2', { class: 'notes-title', text: 'Notifications' }), settingsBtn),
      settings,
      R.notesList);
    renderNotificationList();
    showPopover(R.bell, panel, 'popover--up');
    if (withSettings && settings) settings.querySelector('input').focus();
    loadNotifications();
  }

  function renderNotificationList() {
    const box = R.notesList;
    if (!box) return;
    clear(box);
    const { list, loaded, error } = S.notes;
    if (!loaded) {
      box.appendChild(h('div', { class: 'menu-empty' }, h('span', { class: 'spinner spinner--sm', 'aria-hidden': 'true' }), 'Loading…'));
    } else if (!list.length) {
      box.appendChild(h('p', { class: 'menu-empty', text: error ? error.message : 'Nothing yet. Assignments, tasks and escalations show up here.' }));
    } else {
      box.appendChild(h('ul', { class: 'notes', role: 'list' }, list.map((n) => h('li', null, notificationNode(n)))));
    }
  }

  function notificationNode(n) {
    const href = n.conversation_id ? '#/c/' + enc(n.conversation_id) : n.task_id ? '#/tasks' : null;
    const cls = 'note' + (n.read ? '' : ' is-unread');
    const kids = [
      h('span', { class: 'note-icon note-icon--' + (n.kind || 'other') }, icon(NOTE_ICONS[n.kind] || 'bell')),
      h('span', { class: 'note-main' },
        n.read ? null : h('span', { class: 'sr-only', text: 'Unread: ' }),
        h('span', { class: 'note-text', text: n.text }),
        h('time', { class: 'note-time', datetime: n.created_at, title: fullDate(n.created_at), text: agoLong(n.created_at) })),
      n.read ? null : h('span', { class: 'note-dot', 'aria-hidden': 'true' }),
    ];
    if (!href) return h('div', { class: cls, 'data-testid': 'notification-item' }, kids);
    // Following a link to the page already shown fires no hashchange: close the panel here.
    return h('a', { class: cls, href, 'data-testid': 'notification-item', onclick: () => closePopover() }, kids);
  }

  /** The signed-in user's own notification switches (any role may change these). */
  function myNotificationSettings() {
    const prefs = S.me && S.me.notifications;
    if (!prefs) return null;
    const box = h('div', { class: 'notes-settings', id: 'notes-settings', 'data-testid': 'my-notifications' },
      h('p', { class: 'notes-settings-title', text: 'Notify me when' }));
    for (const [key, label] of NOTIFY_PREFS) {
      const input = h('input', { type: 'checkbox', checked: prefs[key] !== false, 'data-testid': 'my-notify-' + key });
      input.addEventListener('change', () => saveMyNotification(key, input));
      box.appendChild(checkField(label, input));
    }
    return box;
  }

  async function saveMyNotification(key, input) {
    const on = input.checked;
    input.disabled = true;
    try {
      const res = await api('PATCH', '/api/v1/users/' + enc(S.me.id), { notifications: { [key]: on } });
      const saved = res && res.user && res.user.notifications;
      S.me.notifications = saved || Object.assign({}, S.me.notifications, { [key]: on });
      toast('Notification settings saved.', 'success');
    } catch (e) {
      input.checked = !on;
      report(e);
    } finally {
      input.disabled = false;
      if (input.isConnected) input.focus();
    }
  }

  // ---------------------------------------------------------------------------
  // Conversation view
  // ---------------------------------------------------------------------------

  function openConversation(id) {
    const I = R.inbox;
    if (!I) return;
    I.root.classList.toggle('has-conv', !!id);
    app.classList.toggle('in-conv', !!id);
    if (!id) {
      if (S.cur) saveDraft();
      S.cur = null;
      renderEmptyConv();
      clear(I.contactCol);
      toggleContact(false);
      scheduleListRender();
      return;
    }
    if (S.cur && S.cur.id === id) return;
    if (S.cur) saveDraft();
    S.cur = {
      id,
      conv: S.convs.get(id) || null,
      msgs: new Map(),
      last: null,
      mode: 'reply',
      alert: null,
      lastTyping: 0,
      loading: true,
    };
    S.fresh.delete(id);
    renderConvSkeleton();
    loadConversation(id, true);
    loadAfterHandover(id);
    scheduleListRender();
  }

  async function loadConversation(id, first) {
    try {
      const res = await api('GET', '/api/v1/conversations/' + enc(id));
      if (!S.cur || S.cur.id !== id) return;
      const c = res.conversation;
      upsert(c);
      S.cur.conv = S.convs.get(c.id) || c;
      S.cur.loading = false;
      const msgs = (res.messages || []).slice().sort((a, b) => (a.seq || 0) - (b.seq || 0));
      if (first) {
        S.cur.msgs = new Map();
        renderConvView();
        renderMessages(msgs);
      } else {
        refreshConvChrome();
        for (const m of msgs) addMessage(m, true);
      }
      const lastReal = msgs.slice().reverse().find((m) => m.sender !== 'system') || msgs[msgs.length - 1];
      if (lastReal) setPreview(id, lastReal);
      // The GET marked it read.
      const known = S.convs.get(id);
      if (known) S.convs.set(id, Object.assign({}, known, { unread: 0 }));
      scheduleListRender();
    } catch (e) {
      if (!S.cur || S.cur.id !== id) return;
      if (first) renderConvError(e);
      else report(e);
    }
  }

  function reloadCurrent() {
    if (S.cur) loadConversation(S.cur.id, false);
  }

  let markReadTimer = 0;

  function scheduleMarkRead() {
    clearTimeout(markReadTimer);
    if (document.visibilityState !== 'visible' || !S.cur) return;
    const id = S.cur.id;
    markReadTimer = setTimeout(() => {
      if (S.cur && S.cur.id === id) loadConversation(id, false);
    }, 1500);
  }

  function renderEmptyConv() {
    const I = R.inbox;
    clear(I.convCol);
    const waiting = listOf('waiting').length;
    I.convCol.appendChild(h('div', { class: 'conv-empty' },
      h('div', { class: 'conv-empty-art' }, logo(56)),
      h('h2', { class: 'conv-empty-title', text: waiting ? waiting + (waiting === 1 ? ' visitor is' : ' visitors are') + ' waiting for you' : 'You are all caught up' }),
      h('p', { class: 'conv-empty-sub', text: waiting ? 'Pick a conversation from the Waiting tab to claim it.' : 'Select a conversation to read it. New hand-overs appear instantly, with a chime.' })));
  }

  function renderConvSkeleton() {
    const I = R.inbox;
    clear(I.convCol);
    I.convCol.appendChild(h('div', { class: 'conv-loading' }, h('div', { class: 'spinner', 'aria-hidden': 'true' }), h('span', { text: 'Loading conversation…' })));
  }

  function renderConvError(e) {
    const I = R.inbox;
    clear(I.convCol);
    I.convCol.appendChild(h('div', { class: 'conv-empty' },
      h('div', { class: 'list-empty-icon list-empty-icon--red' }, icon('alert')),
      h('h2', { class: 'conv-empty-title', text: e.status === 404 ? 'Conversation not found' : 'Could not open this conversation' }),
      h('p', { class: 'conv-empty-sub', text: e.message }),
      h('a', { class: 'btn btn-secondary', href: '#/', text: 'Back to the inbox' })));
  }

  function renderConvView() {
    const I = R.inbox;
    const cur = S.cur;
    clear(I.convCol);
    cur.el = {};
    const E = cur.el;
    E.head = h('header', { class: 'conv-head' });
    E.actionsBar = h('div', { class: 'conv-actionbar' });
    E.log = h('div', { class: 'messages', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions', 'aria-label': 'Messages', tabindex: '0' });
    E.jump = h('button', { class: 'jump-btn', type: 'button', hidden: true, onclick: () => scrollToBottom(true) }, icon('arrowDown'), 'New messages');
    E.log.addEventListener('scroll', () => {
      if (nearBottom()) E.jump.hidden = true;
    });
    E.composer = h('div', { class: 'composer-wrap' });
    append(I.convCol, [E.head, E.actionsBar, h('div', { class: 'messages-wrap' }, E.log, E.jump), E.composer]);
    renderConvHead();
    renderActions();
    renderComposer();
    renderContact();
  }

  function refreshConvChrome() {
    if (!S.cur || !S.cur.el) return;
    renderConvHead();
    renderActions();
    updateComposerState();
    renderContact();
  }

  function statusPill(status) {
    return h('span', { class: 'pill pill--' + status }, h('span', { class: 'pill-dot', 'aria-hidden': 'true' }), STATUS_LABEL[status] || words(status));
  }

  function renderConvHead() {
    const cur = S.cur;
    const c = cur.conv;
    const E = cur.el;
    clear(E.head);
    const name = contactName(c);
    const ch = channelInfo(c.channel);
    const sub = [];
    sub.push(statusPill(c.status));
    if (c.handover && c.handover.reason && c.status !== 'bot') sub.push(h('span', { class: 'chip chip--reason chip--' + reasonTone(c.handover.reason), text: reasonLabel(c.handover.reason) }));
    sub.push(h('span', { class: 'conv-sub-item' }, icon(ch.icon, 'icon--sm'), ch.label));
    if (c.assignee) {
      sub.push(h('span', { class: 'conv-sub-item' }, avatar(c.assignee.name, c.assignee.id, 'avatar--xs'),
        S.me && c.assignee.id === S.me.id ? 'Assigned to you' : 'Assigned to ' + c.assignee.name));
    } else if (c.department) {
      sub.push(h('span', { class: 'conv-sub-item', text: 'Team: ' + c.department }));
    }
    append(E.head, [
      h('a', { class: 'icon-btn back-btn', href: '#/', 'aria-label': 'Back to conversations' }, icon('back')),
      avatar(name, (c.contact && c.contact.id) || c.id, 'avatar--md'),
      h('div', { class: 'conv-head-text' },
        h('h2', { class: 'conv-title', text: name }),
        h('div', { class: 'conv-sub' }, sub)),
      h('button', {
        class: 'icon-btn contact-toggle', type: 'button', 'aria-label': 'Contact details', title: 'Contact details',
        'aria-expanded': String(S.contactOpen), onclick: () => toggleContact(),
      }, icon('panel')),
    ]);
  }

  function toggleContact(force) {
    const I = R.inbox;
    S.contactOpen = typeof force === 'boolean' ? force : !S.contactOpen;
    if (!I) return;
    I.root.classList.toggle('show-contact', S.contactOpen);
    const t = I.convCol.querySelector('.contact-toggle');
    if (t) t.setAttribute('aria-expanded', String(S.contactOpen));
    if (S.contactOpen && window.matchMedia('(max-width: 1279px)').matches) {
      const close = I.contactCol.querySelector('.contact-close');
      if (close) close.focus();
    }
  }

  function actionButton(label, iconName, cls, testid, run) {
    return h('button', { type: 'button', class: 'btn ' + cls, 'data-testid': testid || null, onclick: (e) => run(e.currentTarget) },
      icon(iconName), h('span', { text: label }));
  }

  function renderActions(force) {
    const cur = S.cur;
    const c = cur.conv;
    const E = cur.el;
    const mine = !!(c.assignee && S.me && c.assignee.id === S.me.id);
    // Rebuild only when something shown changes, so buttons stay put under the pointer.
    const key = JSON.stringify([c.status, c.assignee && c.assignee.id, c.assignee && c.assignee.name, c.escalated_at, c.updated_at && c.status === 'resolved' ? c.updated_at : '', cur.alert, S.me && S.me.role]);
    if (!force && E.actionsKey === key) return;
    E.actionsKey = key;
    clear(E.actionsBar);
    const buttons = [];
    let note = null;
    if (!canRespond()) {
      note = h('span', { class: 'action-note' }, icon('info', 'icon--sm'), 'You have read-only access to conversations.');
    } else if (c.status === 'bot') {
      note = h('span', { class: 'action-note' }, icon('bot', 'icon--sm'), 'The bot is handling this conversation.');
      buttons.push(actionButton('Stop bot and join', 'join', 'btn-primary', 'join-button', (b) => doClaim(b)));
    } else if (c.status === 'waiting') {
      const since = c.escalated_at ? ' · since ' + agoLong(c.escalated_at) : '';
      note = h('span', { class: 'action-note action-note--warn' }, icon('clock', 'icon--sm'), (c.assignee ? 'Transferred to ' + c.assignee.name : 'Waiting for an agent') + since);
      buttons.push(actionButton('Claim', 'hand', 'btn-primary', 'claim-button', (b) => doClaim(b)));
    } else if (c.status === 'active' && mine) {
      note = h('span', { class: 'action-note action-note--ok' }, icon('check', 'icon--sm'), 'You are handling this conversation.');
      buttons.push(actionButton('Hand back to bot', 'handback', 'btn-secondary', 'handback-button', (b) => doTransition(b, 'handback', 'Handed back to the bot.')));
      const transferBtn = actionButton('Transfer', 'transfer', 'btn-secondary', 'transfer-button', (b) => openTransfer(b));
      transferBtn.setAttribute('aria-haspopup', 'dialog');
      transferBtn.setAttribute('aria-expanded', 'false');
      buttons.push(transferBtn);
      buttons.push(actionButton('Unclaim', 'unclaim', 'btn-ghost', 'unclaim-button', (b) => doTransition(b, 'unclaim', 'Put back in the queue.')));
      buttons.push(actionButton('Resolve', 'resolve', 'btn-success', 'resolve-button', (b) => doTransition(b, 'resolve', 'Conversation resolved.')));
    } else if (c.status === 'active') {
      const who = c.assignee ? c.assignee.name : 'Someone else';
      note = h('span', { class: 'action-note', 'data-testid': 'held-note' }, avatar(who, c.assignee && c.assignee.id, 'avatar--xs'), who + ' is handling this');
      if (isAdmin()) buttons.push(actionButton('Resolve', 'resolve', 'btn-secondary', 'resolve-button', (b) => doTransition(b, 'resolve', 'Conversation resolved.')));
    } else if (c.status === 'resolved') {
      note = h('span', { class: 'action-note' }, icon('resolve', 'icon--sm'), 'Resolved ' + agoLong(c.updated_at) + '. A new message from the visitor reopens it.');
    }
    append(E.actionsBar, [h('div', { class: 'action-note-wrap' }, note), h('div', { class: 'action-buttons' }, buttons)]);
    if (cur.alert) {
      E.actionsBar.appendChild(h('div', { class: 'conflict', 'data-testid': 'claim-conflict', role: 'alert' },
        icon('alert', 'icon--sm'), h('span', { text: cur.alert })));
    }
  }

  function setBusy(btn, busy) {
    if (!btn) return;
    btn.disabled = busy;
    btn.classList.toggle('is-busy', busy);
  }

  function applyConv(c) {
    if (!c) return;
    upsert(c);
    if (S.cur && S.cur.id === c.id) {
      S.cur.conv = S.convs.get(c.id) || c;
      refreshConvChrome();
    }
    scheduleListRender();
  }

  function handleConvError(e, id) {
    if (e.status === 409) {
      if (S.cur && S.cur.id === id) {
        S.cur.alert = e.message;
        renderActions();
        loadConversation(id, false);
      }
      return;
    }
    report(e);
  }

  async function doClaim(btn) {
    const id = S.cur.id;
    S.cur.alert = null;
    setBusy(btn, true);
    try {
      const res = await api('POST', '/api/v1/conversations/' + enc(id) + '/claim');
      applyConv(res && res.conversation);
      if (btn.isConnected) setBusy(btn, false);
      if (S.cur && S.cur.id === id && S.cur.el && S.cur.el.input) S.cur.el.input.focus();
    } catch (e) {
      setBusy(btn, false);
      handleConvError(e, id);
    }
  }

  async function doTransition(btn, what, done) {
    const id = S.cur.id;
    S.cur.alert = null;
    setBusy(btn, true);
    try {
      const res = await api('POST', '/api/v1/conversations/' + enc(id) + '/' + what);
      applyConv(res && res.conversation);
      if (btn.isConnected) setBusy(btn, false);
      toast(done, 'success');
    } catch (e) {
      setBusy(btn, false);
      handleConvError(e, id);
    }
  }

  async function loadAgents(force) {
    if (S.agents && !force) return S.agents;
    const res = await api('GET', '/api/v1/agents');
    S.agents = (res && res.agents) || [];
    return S.agents;
  }

  function openTransfer(btn) {
    if (openPopover && openPopover.anchor === btn) {
      closePopover(true);
      return;
    }
    const id = S.cur.id;
    const listBox = h('div', { class: 'menu-list' }, h('div', { class: 'menu-empty' }, h('span', { class: 'spinner spinner--sm', 'aria-hidden': 'true' }), 'Loading agents…'));
    const dept = h('input', { class: 'input input--sm', type: 'text', id: 'transfer-dept', placeholder: 'e.g. billing', maxlength: '100', autocomplete: 'off' });
    const deptBtn = h('button', { class: 'btn btn-secondary btn-sm', type: 'submit', text: 'Send to team' });
    const deptForm = h('form', { class: 'menu-form' },
      h('label', { class: 'menu-label', for: 'transfer-dept', text: 'Or to a department' }),
      h('div', { class: 'menu-form-row' }, dept, deptBtn));
    deptForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const d = dept.value.trim();
      if (!d) {
        dept.focus();
        return;
      }
      doTransfer(id, { department: d }, 'Sent to ' + d + '.');
    });
    const panel = h('div', { role: 'dialog', 'aria-label': 'Transfer conversation' },
      h('div', { class: 'menu-label', text: 'Transfer to an agent' }), listBox, h('div', { class: 'menu-sep' }), deptForm);
    showPopover(btn, panel, 'popover--transfer');
    loadAgents(true).then((agents) => {
      clear(listBox);
      const others = agents.filter((a) => !S.me || a.id !== S.me.id).filter((a) => a.role !== 'viewer');
      if (!others.length) {
        listBox.appendChild(h('div', { class: 'menu-empty', text: 'No other agents yet.' }));
        return;
      }
      const order = { online: 0, away: 1, offline: 2 };
      others.sort((a, b) => (order[a.presence] ?? 3) - (order[b.presence] ?? 3) || String(a.name).localeCompare(String(b.name)));
      for (const a of others) {
        listBox.appendChild(h('button', {
          class: 'menu-item', type: 'button', onclick: () => doTransfer(id, { agent_id: a.id }, 'Transferred to ' + a.name + '.'),
        },
        h('span', { class: 'menu-avatar' }, avatar(a.name, a.id, 'avatar--sm'), h('span', { class: 'presence-dot presence-' + (a.presence || 'offline'), title: words(a.presence || 'offline') })),
        h('span', { class: 'menu-item-label', text: a.name }),
        h('span', { class: 'menu-item-hint', text: words(a.presence || 'offline') })));
      }
      const firstAgent = listBox.querySelector('button');
      if (firstAgent && document.activeElement === dept && !dept.value) firstAgent.focus();
    }).catch((e) => {
      clear(listBox);
      listBox.appendChild(h('div', { class: 'menu-empty', text: e.status === 404 ? 'The agent list is not available on this server yet.' : e.message }));
    });
  }

  async function doTransfer(id, body, done) {
    closePopover();
    try {
      const res = await api('POST', '/api/v1/conversations/' + enc(id) + '/transfer', body);
      applyConv(res && res.conversation);
      toast(done, 'success');
    } catch (e) {
      handleConvError(e, id);
    }
  }

  // --- messages -----------------------------------------------------------------

  function nearBottom() {
    const log = S.cur && S.cur.el && S.cur.el.log;
    if (!log) return true;
    return log.scrollHeight - log.scrollTop - log.clientHeight < 120;
  }

  function scrollToBottom(smooth) {
    const log = S.cur && S.cur.el && S.cur.el.log;
    if (!log) return;
    if (smooth && log.scrollTo) log.scrollTo({ top: log.scrollHeight, behavior: 'smooth' });
    else log.scrollTop = log.scrollHeight;
    if (S.cur.el.jump) S.cur.el.jump.hidden = true;
  }

  function renderMessages(msgs) {
    const cur = S.cur;
    const log = cur.el.log;
    clear(log);
    cur.msgs = new Map();
    cur.last = null;
    const c = cur.conv;
    log.appendChild(h('div', { class: 'log-start' },
      h('span', { class: 'log-start-icon' }, icon(channelInfo(c.channel).icon)),
      h('span', { text: 'Conversation started ' + fullDate(c.created_at) + ' via ' + channelInfo(c.channel).label })));
    if (!msgs.length) {
      log.appendChild(h('div', { class: 'log-empty', text: 'No messages yet.' }));
    }
    for (const m of msgs) placeMessage(m);
    scrollToBottom(false);
    requestAnimationFrame(() => scrollToBottom(false));
  }

  function addMessage(m, quiet) {
    const cur = S.cur;
    if (!cur || !cur.el || !m) return;
    if (m.id && cur.msgs.has(m.id)) return;
    if (!m.id && m.seq && Array.from(cur.msgs.values()).some((x) => x.seq === m.seq)) return;
    const stick = nearBottom() || (m.sender === 'agent' && m.author && S.me && m.author.id === S.me.id);
    if (cur.last && m.seq && cur.last.seq && m.seq < cur.last.seq) {
      // Out of order: rebuild in seq order.
      const all = Array.from(cur.msgs.values()).concat([m]).sort((a, b) => (a.seq || 0) - (b.seq || 0));
      const top = cur.el.log.scrollTop;
      renderMessages(all);
      if (!stick) cur.el.log.scrollTop = top;
      return;
    }
    const empty = cur.el.log.querySelector('.log-empty');
    if (empty) empty.remove();
    placeMessage(m);
    if (stick) scrollToBottom(true);
    else if (!quiet) cur.el.jump.hidden = false;
  }

  function authorKey(m) {
    return m.sender + '|' + (m.author ? m.author.id || m.author.name : '') + '|' + (m.internal ? 1 : 0);
  }

  function placeMessage(m) {
    const cur = S.cur;
    const log = cur.el.log;
    const prev = cur.last;
    if (!prev || dayKey(prev.created_at) !== dayKey(m.created_at)) {
      log.appendChild(h('div', { class: 'day-sep', role: 'separator' }, h('span', { text: dayLabel(m.created_at) })));
    }
    const grouped = !!prev && m.sender !== 'system' && prev.sender !== 'system' && authorKey(prev) === authorKey(m)
      && dayKey(prev.created_at) === dayKey(m.created_at) && ts(m.created_at) - ts(prev.created_at) < 5 * 60000;
    log.appendChild(messageNode(m, grouped));
    if (m.id) cur.msgs.set(m.id, m);
    else cur.msgs.set('seq:' + m.seq, m);
    cur.last = m;
  }

  // A message the platform has not taken: why, and (once given up) a way to send it again.
  function deliveryNote(m) {
    const d = m.delivery;
    if (!d) return null;
    const failed = d.status === 'failed';
    const label = (failed ? 'Not delivered' : 'Not delivered yet, retrying') + ' to ' + channelInfo(d.channel).label + ': ' + (d.error || 'unknown error');
    const note = h('div', { class: 'msg-undelivered' + (failed ? ' is-failed' : ''), 'data-testid': 'message-undelivered', role: 'status' },
      icon('alert', 'icon--xs'), h('span', { text: label }));
    if (failed && S.cur) {
      const id = S.cur.id;
      note.appendChild(h('button', {
        class: 'btn btn-ghost btn-sm', type: 'button', 'data-testid': 'message-retry', text: 'Retry',
        onclick: async (e) => {
          e.currentTarget.disabled = true;
          try {
            await api('POST', '/api/v1/conversations/' + enc(id) + '/messages/' + enc(m.id) + '/retry');
            toast('Sending it again.', 'success');
            await loadConversation(id, true);
          } catch (err) {
            toast(err.message || 'Could not send it again.');
          }
        },
      }));
    }
    return note;
  }

  function messageNode(m, grouped) {
    const time = h('time', { class: 'msg-time', datetime: m.created_at, title: fullDate(m.created_at), text: clock(m.created_at) });
    if (m.sender === 'system') {
      return h('div', { class: 'msg msg--system', 'data-id': m.id, 'data-seq': m.seq },
        h('span', { class: 'msg-system-line' }, h('span', { class: 'msg-system-text', text: m.text }), time), deliveryNote(m));
    }
    const cls = ['msg', 'msg--' + m.sender];
    if (m.internal) cls.push('msg--note');
    if (grouped) cls.push('is-grouped');
    const bubble = h('div', { class: 'bubble' });
    if (m.internal) {
      bubble.appendChild(h('div', { class: 'note-label' }, icon('lock', 'icon--xs'), 'Internal note'));
    }
    bubble.appendChild(h('div', { class: 'bubble-text', text: m.text }));
    let who;
    if (m.sender === 'visitor') {
      who = [h('span', { class: 'msg-author', text: contactName(S.cur.conv) })];
    } else if (m.sender === 'bot') {
      who = [h('span', { class: 'bot-badge' }, icon('bot', 'icon--xs'), 'Bot'), h('span', { class: 'msg-author', text: (m.author && m.author.name) || 'Bot' })];
    } else {
      const mine = m.author && S.me && m.author.id === S.me.id;
      who = [h('span', { class: 'msg-author', text: m.author ? (mine ? m.author.name + ' (you)' : m.author.name) : 'Agent' })];
    }
    const meta = h('div', { class: 'msg-meta' }, who, h('span', { class: 'msg-dot', 'aria-hidden': 'true', text: '·' }), time);
    const node = h('div', { class: cls.join(' '), 'data-id': m.id, 'data-seq': m.seq, 'data-sender': m.sender });
    if (m.sender === 'visitor') node.appendChild(avatar(contactName(S.cur.conv), (S.cur.conv.contact && S.cur.conv.contact.id) || S.cur.conv.id, 'avatar--sm msg-avatar'));
    const body = h('div', { class: 'msg-body' }, grouped ? null : meta, bubble);
    if (Array.isArray(m.actions) && m.actions.length) {
      body.appendChild(h('div', { class: 'msg-actions' }, m.actions.map((a) => h('span', {
        class: 'msg-action msg-action--' + (a.kind || 'reply'), title: a.url || (a.kind === 'request_human' ? 'Asks for a human' : 'Quick reply'),
      }, a.kind === 'link' ? icon('webhook', 'icon--xs') : a.kind === 'request_human' ? icon('user', 'icon--xs') : null, a.label || a.id))));
    }
    const undelivered = deliveryNote(m);
    if (undelivered) body.appendChild(undelivered);
    if (grouped) body.appendChild(h('div', { class: 'msg-meta msg-meta--hover' }, time));
    node.appendChild(body);
    if (m.sender !== 'visitor') {
      node.appendChild(m.sender === 'bot'
        ? h('span', { class: 'avatar avatar--sm avatar--bot msg-avatar', 'aria-hidden': 'true' }, icon('bot'))
        : avatar((m.author && m.author.name) || 'Agent', m.author && m.author.id, 'avatar--sm msg-avatar'));
    }
    return node;
  }

  // --- composer -------------------------------------------------------------------

  function saveDraft() {
    const cur = S.cur;
    if (cur && cur.el && cur.el.input) {
      if (cur.el.input.value) S.drafts.set(cur.id, { text: cur.el.input.value, mode: cur.mode });
      else S.drafts.delete(cur.id);
    }
  }

  function renderComposer() {
    const cur = S.cur;
    const E = cur.el;
    clear(E.composer);
    const draft = S.drafts.get(cur.id);
    if (draft) cur.mode = draft.mode;
    E.tabReply = h('button', { type: 'button', class: 'composer-tab', 'data-mode': 'reply', onclick: () => setMode('reply') }, icon('chat', 'icon--sm'), 'Reply');
    E.tabNote = h('button', { type: 'button', class: 'composer-tab composer-tab--note', 'data-mode': 'note', onclick: () => setMode('note') }, icon('lock', 'icon--sm'), 'Internal note');
    E.input = h('textarea', {
      class: 'composer-input', id: 'composer-input', 'data-testid': 'composer-input', rows: '1', 'aria-label': 'Message',
      value: draft ? draft.text : '',
    });
    E.send = h('button', { type: 'submit', class: 'btn btn-primary composer-send', 'data-testid': 'composer-send' }, h('span', { text: 'Send' }), icon('send', 'icon--sm'));
    E.hint = h('div', { class: 'composer-hint' });
    E.form = h('form', { class: 'composer', 'aria-label': 'Reply' },
      h('div', { class: 'composer-tabs', role: 'group', 'aria-label': 'Message type' }, E.tabReply, E.tabNote),
      h('div', { class: 'composer-box' }, E.input, E.send),
      E.hint);
    E.form.addEventListener('submit', (e) => {
      e.preventDefault();
      sendMessage();
    });
    E.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.altKey && !e.ctrlKey && !e.metaKey && !e.isComposing) {
        e.preventDefault();
        sendMessage();
      }
    });
    E.input.addEventListener('input', () => {
      autosize();
      maybeTyping();
    });
    E.composer.appendChild(E.form);
    updateComposerState();
    autosize();
  }

  function autosize() {
    const t = S.cur && S.cur.el && S.cur.el.input;
    if (!t) return;
    t.style.height = 'auto';
    t.style.height = Math.min(t.scrollHeight + 2, 220) + 'px';
  }

  function replyBlocked() {
    const c = S.cur.conv;
    return c.status === 'active' && c.assignee && S.me && c.assignee.id !== S.me.id;
  }

  function setMode(mode) {
    if (mode === 'reply' && replyBlocked()) return;
    S.cur.mode = mode;
    updateComposerState();
    S.cur.el.input.focus();
  }

  function updateComposerState() {
    const cur = S.cur;
    if (!cur || !cur.el || !cur.el.form) return;
    const E = cur.el;
    const c = cur.conv;
    if (!canRespond()) {
      E.form.classList.add('is-disabled');
      E.input.disabled = true;
      E.send.disabled = true;
      E.tabReply.disabled = true;
      E.tabNote.disabled = true;
      E.input.placeholder = 'Viewers can read conversations but cannot reply.';
      E.hint.textContent = 'Your role is viewer. Ask an admin for responder access to reply.';
      return;
    }
    if (replyBlocked()) cur.mode = 'note';
    const note = cur.mode === 'note';
    E.form.classList.toggle('is-note', note);
    E.tabReply.setAttribute('aria-pressed', String(!note));
    E.tabNote.setAttribute('aria-pressed', String(note));
    E.tabReply.disabled = !!replyBlocked();
    E.tabReply.title = replyBlocked() ? (c.assignee.name + ' is handling this; you can leave an internal note.') : '';
    const name = contactName(c);
    E.input.placeholder = note ? 'Write an internal note — only your team sees it' : 'Reply to ' + name + '…';
    let hint;
    if (note) hint = replyBlocked() ? c.assignee.name + ' is handling this — notes are visible to your team only.' : 'Notes are visible to your team only.';
    else if (c.status === 'bot') hint = 'Sending stops the bot and assigns this conversation to you.';
    else if (c.status === 'waiting') hint = 'Sending claims this conversation for you.';
    else if (c.status === 'resolved') hint = 'Sending reopens this conversation and assigns it to you.';
    else hint = 'Enter to send · Shift+Enter for a new line';
    E.hint.textContent = hint;
    E.send.querySelector('span').textContent = note ? 'Add note' : 'Send';
  }

  function maybeTyping() {
    const cur = S.cur;
    if (!cur || cur.mode !== 'reply' || !cur.el.input.value.trim()) return;
    const now = Date.now();
    if (now - cur.lastTyping < 3000) return;
    cur.lastTyping = now;
    api('POST', '/api/v1/conversations/' + enc(cur.id) + '/typing').catch(() => {});
  }

  async function sendMessage() {
    const cur = S.cur;
    if (!cur || !canRespond()) return;
    const E = cur.el;
    const text = E.input.value;
    if (!text.trim() || cur.sending) return;
    const internal = cur.mode === 'note';
    const id = cur.id;
    cur.sending = true;
    E.send.disabled = true;
    E.form.classList.add('is-sending');
    E.input.value = '';
    autosize();
    S.drafts.delete(id);
    try {
      const body = internal ? { text, internal: true } : { text };
      const res = await api('POST', '/api/v1/conversations/' + enc(id) + '/messages', body);
      if (S.cur && S.cur.id === id) {
        cur.alert = null;
        if (res && res.message) {
          addMessage(res.message);
          setPreview(id, res.message);
        }
        const st = cur.conv && cur.conv.status;
        if (!internal && st !== 'active') loadConversation(id, false);
        else renderActions();
      }
      scheduleListRender();
    } catch (e) {
      if (S.cur && S.cur.id === id && !E.input.value) {
        E.input.value = text;
        autosize();
      } else if (!S.cur || S.cur.id !== id) {
        S.drafts.set(id, { text, mode: internal ? 'note' : 'reply' });
      }
      handleConvError(e, id);
    } finally {
      cur.sending = false;
      E.send.disabled = false;
      E.form.classList.remove('is-sending');
      if (S.cur && S.cur.id === id) {
        updateComposerState();
        E.input.focus();
      }
    }
  }

  // --- contact panel ------------------------------------------------------------

  function dl(rows) {
    const list = h('dl', { class: 'facts' });
    for (const [k, v] of rows) {
      if (v === null || v === undefined || v === '') continue;
      list.appendChild(h('div', { class: 'fact' }, h('dt', { text: k }), h('dd', null, v)));
    }
    return list;
  }

  function renderContact() {
    const I = R.inbox;
    const cur = S.cur;
    if (!I || !cur || !cur.conv) return;
    const c = cur.conv;
    const ct = c.contact || {};
    const name = contactName(c);
    const ch = channelInfo(c.channel);
    const col = I.contactCol;
    const hadFocus = document.activeElement && col.contains(document.activeElement) && document.activeElement.classList.contains('tag-input');
    const focusedTask = focusedTaskId(col);
    clear(col);
    const copyBtn = h('button', {
      class: 'icon-btn icon-btn--xs', type: 'button', 'aria-label': 'Copy conversation ID', title: 'Copy ID',
      onclick: () => {
        if (navigator.clipboard) navigator.clipboard.writeText(c.id).then(() => toast('Conversation ID copied.', 'success'), () => {});
      },
    }, icon('copy'));
    const hv = c.handover;
    append(col, [
      h('div', { class: 'contact-top' },
        h('button', { class: 'icon-btn contact-close', type: 'button', 'aria-label': 'Close contact details', onclick: () => toggleContact(false) }, icon('x')),
        avatar(name, ct.id || c.id, 'avatar--lg'),
        h('h2', { class: 'contact-name', text: name }),
        h('p', { class: 'contact-sub', text: ct.email || (ct.name ? ch.label + ' visitor' : 'Anonymous ' + ch.label.toLowerCase() + ' visitor') })),
      h('section', { class: 'panel-section' },
        h('h3', { class: 'panel-title', text: 'Contact' }),
        dl([
          ['Name', ct.name || h('span', { class: 'muted', text: 'Unknown' })],
          ['Email', ct.email ? h('a', { href: 'mailto:' + ct.email, text: ct.email }) : h('span', { class: 'muted', text: '—' })],
          ['Phone', ct.phone ? h('a', { href: 'tel:' + ct.phone, text: ct.phone }) : h('span', { class: 'muted', text: '—' })],
          ['Channel', h('span', { class: 'inline-icon' }, icon(ch.icon, 'icon--sm'), ch.label)],
        ])),
      h('section', { class: 'panel-section' },
        h('h3', { class: 'panel-title', text: 'Conversation' }),
        dl([
          ['ID', h('span', { class: 'id-row' }, h('code', { class: 'mono', text: c.id }), copyBtn)],
          ['Status', statusPill(c.status)],
          ['Bot', c.bot],
          ['Created', fullDate(c.created_at)],
          ['Updated', fullDate(c.updated_at)],
          ['Assignee', c.assignee
            ? h('span', { class: 'inline-icon' }, avatar(c.assignee.name, c.assignee.id, 'avatar--xs'), c.assignee.name)
            : h('span', { class: 'muted', text: 'Unassigned' })],
          ['Department', c.department || null],
        ])),
      tagsSection(c, hadFocus),
      h('section', { class: 'panel-section' },
        h('h3', { class: 'panel-title', text: 'Hand-over' }),
        hv ? dl([
          ['Reason', h('span', { class: 'chip chip--reason chip--' + reasonTone(hv.reason), text: reasonLabel(hv.reason) })],
          ['At', fullDate(hv.at)],
          ['By', hv.by ? byLabel(hv.by, c) : h('span', { class: 'muted', text: 'Automatic' })],
          ['Claimed', c.claimed_at ? fullDate(c.claimed_at) : null],
        ]) : h('p', { class: 'panel-empty', text: 'The bot has not handed this conversation over.' })),
      afterHandoverSection(cur),
    ]);
    refocusTask(col, focusedTask);
  }

  /** Who triggered a hand-over: the server records an agent id, a name or a code. */
  function byLabel(by, c) {
    const v = String(by);
    if (S.me && v === S.me.id) return S.me.name + ' (you)';
    if (c.assignee && v === c.assignee.id) return c.assignee.name;
    const agent = (S.agents || []).find((a) => a.id === v);
    if (agent) return agent.name;
    if (!S.agents && !S.agentsLoading) {
      S.agentsLoading = true;
      loadAgents().then(() => {
        if (S.cur && S.cur.id === c.id) renderContact();
      }).catch(() => {}).finally(() => {
        S.agentsLoading = false;
      });
    }
    if (v === 'visitor' || v === 'bot' || v === 'system') return words(v);
    return /^[0-9a-f]{16,}$/i.test(v) ? h('code', { class: 'mono', text: v }) : v;
  }

  function tagsSection(c, refocus) {
    const tags = (c.tags || []).slice();
    const chips = h('div', { class: 'tag-list' });
    for (const t of tags) {
      chips.appendChild(h('span', { class: 'chip chip--tag chip--removable' }, h('span', { text: t }),
        canRespond() ? h('button', {
          type: 'button', class: 'chip-x', 'aria-label': 'Remove tag ' + t,
          onclick: () => saveTags(c.id, tags.filter((x) => x !== t)),
        }, icon('x')) : null));
    }
    let input = null;
    if (canRespond()) {
      input = h('input', { class: 'tag-input', type: 'text', placeholder: tags.length ? 'Add tag…' : 'Add a tag and press Enter', 'aria-label': 'Add tag', maxlength: '50', autocomplete: 'off', enterkeyhint: 'done' });
      input.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' || e.key === ',') {
          e.preventDefault();
          const v = input.value.trim().replace(/,$/, '');
          if (!v) return;
          if (tags.includes(v)) {
            input.value = '';
            return;
          }
          saveTags(c.id, tags.concat([v]), input);
        } else if (e.key === 'Backspace' && !input.value && tags.length) {
          saveTags(c.id, tags.slice(0, -1), input);
        }
      });
      if (refocus) setTimeout(() => input.focus(), 0);
    }
    return h('section', { class: 'panel-section' },
      h('h3', { class: 'panel-title' }, 'Tags'),
      h('div', { class: 'tag-editor' + (canRespond() ? '' : ' is-readonly') }, chips, input),
      !tags.length && !canRespond() ? h('p', { class: 'panel-empty', text: 'No tags.' }) : null);
  }

  async function saveTags(id, tags, input) {
    try {
      if (input) input.disabled = true;
      const res = await api('PUT', '/api/v1/conversations/' + enc(id) + '/tags', { tags });
      applyConv(res && res.conversation);
      const fresh = R.inbox && R.inbox.contactCol.querySelector('.tag-input');
      if (fresh && input) fresh.focus();
    } catch (e) {
      if (input) input.disabled = false;
      report(e);
    }
  }

  // --- after the hand-over: action runs and tasks -------------------------------

  const refreshAfterHandover = debounce(() => {
    if (S.cur) loadAfterHandover(S.cur.id);
  }, 1000);

  async function loadAfterHandover(id) {
    const [runs, tasks] = await Promise.allSettled([
      api('GET', '/api/v1/conversations/' + enc(id) + '/actions'),
      api('GET', '/api/v1/tasks?assignee=any&conversation_id=' + enc(id) + '&done=true'),
    ]);
    if (!S.cur || S.cur.id !== id) return;
    S.cur.after = {
      runs: runs.status === 'fulfilled' ? (runs.value && runs.value.actions) || [] : null,
      tasks: tasks.status === 'fulfilled' ? (tasks.value && tasks.value.tasks) || [] : null,
      error: (runs.status === 'rejected' ? runs.reason : tasks.reason) || null,
    };
    const old = S.cur.afterEl;
    if (!old || !old.isConnected) return; // the contact panel draws it when it renders
    const focused = focusedTaskId(old);
    const fresh = afterHandoverSection(S.cur);
    old.replaceWith(fresh);
    refocusTask(fresh, focused);
  }

  function afterHandoverSection(cur) {
    const a = cur.after;
    const sec = h('section', { class: 'panel-section', 'data-testid': 'after-handover' },
      h('h3', { class: 'panel-title', text: 'After the hand-over' }));
    cur.afterEl = sec;
    if (!a) {
      sec.appendChild(h('div', { class: 'loading-inline' }, h('span', { class: 'spinner spinner--sm', 'aria-hidden': 'true' }), 'Loading…'));
      return sec;
    }
    const failed = h('p', { class: 'panel-empty', text: a.error ? a.error.message : 'Could not load this.' });
    sec.appendChild(h('h4', { class: 'panel-subtitle', text: 'Actions' }));
    if (a.runs === null) sec.appendChild(failed.cloneNode(true));
    else if (!a.runs.length) sec.appendChild(h('p', { class: 'panel-empty', text: 'No actions have run for this conversation.' }));
    else sec.appendChild(h('ol', { class: 'runs', role: 'list' }, a.runs.slice().sort((x, y) => x.position - y.position).map(actionRunNode)));
    sec.appendChild(h('h4', { class: 'panel-subtitle', text: 'Tasks' }));
    if (a.tasks === null) sec.appendChild(failed);
    else if (!a.tasks.length) sec.appendChild(h('p', { class: 'panel-empty', text: 'No tasks for this conversation.' }));
    else {
      sec.appendChild(h('div', { class: 'task-list task-list--compact' }, a.tasks.map((t) => taskNode(t, {
        compact: true,
        onChange: (next) => {
          a.tasks = a.tasks.map((x) => (x.id === next.id ? next : x));
        },
      }))));
    }
    return sec;
  }

  function actionRunNode(run) {
    return h('li', { class: 'run ' + (run.ok ? 'is-ok' : 'is-failed'), 'data-testid': 'action-run', 'data-ok': String(!!run.ok) },
      h('span', { class: 'run-icon', 'aria-hidden': 'true' }, icon(run.ok ? 'check' : 'alert')),
      h('span', { class: 'run-main' },
        h('span', { class: 'run-head' },
          h('span', { class: 'run-name', text: actionLabel(run.action) }),
          h('span', { class: 'run-state', text: run.ok ? 'Done' : 'Failed' }),
          h('time', { class: 'run-time', datetime: run.at, title: fullDate(run.at), text: clock(run.at) })),
        run.detail ? h('span', { class: 'run-detail', text: run.detail }) : null));
  }

  // --- tasks --------------------------------------------------------------------------

  let taskSeq = 0;

  function dueInfo(t) {
    if (t.done) return { text: t.done_at ? 'Done ' + agoLong(t.done_at) : 'Done', overdue: false };
    if (!ts(t.due_at)) return { text: 'No due date', overdue: false };
    const overdue = ts(t.due_at) < Date.now();
    return { text: overdue ? 'Overdue · was due ' + agoLong(t.due_at) : 'Due ' + agoLong(t.due_at), overdue };
  }

  /** One task with its done checkbox; `opts.compact` leaves out the link to the conversation. */
  function taskNode(t, opts) {
    const o = opts || {};
    const id = 'task-' + (++taskSeq);
    const due = dueInfo(t);
    const mine = !!(t.assignee && S.me && t.assignee.id === S.me.id);
    const check = h('input', {
      type: 'checkbox', class: 'task-check', id, 'data-testid': 'task-done', checked: !!t.done, disabled: !canRespond(),
      title: canRespond() ? (t.done ? 'Mark as not done' : 'Mark as done') : 'Viewers cannot change tasks',
    });
    const row = h('div', {
      class: 'task-row' + (t.done ? ' is-done' : '') + (due.overdue ? ' is-overdue' : ''),
      'data-testid': 'task-row', 'data-task-id': t.id, 'data-done': String(!!t.done),
    },
    check,
    h('div', { class: 'task-main' },
      h('label', { class: 'task-title', for: id, text: t.title || 'Untitled task' }),
      t.description ? h('p', { class: 'task-desc', text: t.description }) : null,
      h('div', { class: 'task-meta' },
        t.assignee
          ? h('span', { class: 'inline-icon task-assignee' }, avatar(t.assignee.name, t.assignee.id, 'avatar--xs'), mine ? 'You' : t.assignee.name || 'Someone')
          : h('span', { class: 'muted', text: 'Unassigned' }),
        h('time', { class: 'task-due', datetime: t.done ? t.done_at : t.due_at, title: fullDate(t.due_at), text: due.text }),
        o.compact || !t.conversation_id ? null
          : h('a', { class: 'task-link', href: '#/c/' + enc(t.conversation_id) }, icon('chat', 'icon--xs'), 'Open conversation'))));
    check.addEventListener('change', () => setTaskDone(t, check, row, o));
    return row;
  }

  async function setTaskDone(t, check, row, o) {
    const done = check.checked;
    const hadFocus = document.activeElement === check;
    check.disabled = true;
    try {
      const res = await api('PATCH', '/api/v1/tasks/' + enc(t.id), { done });
      const next = (res && res.task) || Object.assign({}, t, { done });
      const fresh = taskNode(next, o);
      row.replaceWith(fresh);
      if (hadFocus) fresh.querySelector('.task-check').focus();
      if (o.onChange) o.onChange(next);
    } catch (e) {
      check.checked = !done;
      check.disabled = false;
      report(e);
    }
  }

  function focusedTaskId(box) {
    const active = document.activeElement;
    const row = active && box.contains(active) ? active.closest('[data-task-id]') : null;
    return row ? row.getAttribute('data-task-id') : null;
  }

  function refocusTask(box, id) {
    if (!id) return;
    const check = box.querySelector('[data-task-id="' + CSS.escape(id) + '"] .task-check');
    if (check) check.focus();
  }

  function renderTasks() {
    const scope = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Whose tasks' });
    const withDone = h('input', { type: 'checkbox', id: 'tasks-done', 'data-testid': 'tasks-include-done', checked: S.taskDone });
    const { body } = pageShell('Tasks', 'Follow-ups created after hand-overs, soonest due first.', [
      scope,
      h('label', { class: 'check', for: 'tasks-done' }, withDone, h('span', { text: 'Include done' })),
    ]);
    const content = h('div');
    body.appendChild(content);

    function drawScope() {
      clear(scope);
      for (const [key, label] of [['me', 'Mine'], ['any', 'Everyone’s']]) {
        scope.appendChild(h('button', {
          type: 'button', class: 'segmented-btn', 'aria-pressed': String(S.taskScope === key), 'data-testid': 'tasks-scope-' + key, text: label,
          onclick: () => {
            if (S.taskScope === key) return;
            S.taskScope = key;
            store.set('taskScope', key);
            drawScope();
            load(true);
          },
        }));
      }
    }
    withDone.addEventListener('change', () => {
      S.taskDone = withDone.checked;
      store.set('taskDone', S.taskDone ? '1' : '');
      load(true);
    });

    let gen = 0;
    async function load(showSpinner) {
      const my = ++gen;
      if (showSpinner) clear(content).appendChild(loadingBlock('Loading tasks…'));
      try {
        const res = await api('GET', '/api/v1/tasks?assignee=' + S.taskScope + '&done=' + S.taskDone);
        if (my !== gen || !content.isConnected) return;
        const focused = focusedTaskId(content);
        clear(content).appendChild(taskListView((res && res.tasks) || []));
        refocusTask(content, focused);
      } catch (e) {
        if (my !== gen || !content.isConnected) return;
        clear(content).appendChild(errorBlock(e, 'Tasks'));
      }
    }
    R.reloadTasks = () => {
      if (content.isConnected) load(false);
    };
    drawScope();
    load(true);
  }

  function taskListView(tasks) {
    if (!tasks.length) {
      const whose = S.taskScope === 'me' ? 'You have no ' : 'There are no ';
      return emptyState('tasks', whose + (S.taskDone ? 'tasks' : 'open tasks'),
        'Tasks come from the "task" action that runs after a hand-over. They show up here with their due time.');
    }
    return h('div', { class: 'card task-list', 'data-testid': 'task-list' }, tasks.map((t) => taskNode(t)));
  }

  // ---------------------------------------------------------------------------
  // Admin pages
  // ---------------------------------------------------------------------------

  const ADMIN_PAGES = [
    ['users', 'Users', 'users'],
    ['departments', 'Departments', 'layers'],
    ['bots', 'Bots', 'bot'],
    ['knowledge', 'Knowledge base', 'book'],
    ['channels', 'Channels', 'radio'],
    ['webhooks', 'Webhooks', 'webhook'],
    ['plugins', 'Plugins', 'plug'],
  ];

  function pageShell(title, sub, tools) {
    clear(R.main);
    const body = h('div', { class: 'page-body' });
    const page = h('div', { class: 'page' },
      h('header', { class: 'page-head' },
        h('div', { class: 'page-head-text' }, h('h1', { class: 'page-title', text: title }), sub ? h('p', { class: 'page-sub', text: sub }) : null),
        tools ? h('div', { class: 'page-tools' }, tools) : null),
      body);
    R.main.appendChild(page);
    return { page, body };
  }

  function renderAdmin(pageKey) {
    const known = ADMIN_PAGES.find((p) => p[0] === pageKey);
    const key = known ? pageKey : 'users';
    clear(R.main);
    const nav = h('nav', { class: 'subnav', 'aria-label': 'Admin' },
      h('div', { class: 'subnav-title', text: 'Admin' }),
      ADMIN_PAGES.map(([k, label, ic]) => h('a', {
        class: 'subnav-link', href: '#/admin/' + k, 'data-testid': 'nav-' + k, 'aria-current': k === key ? 'page' : null,
      }, icon(ic), h('span', { text: label }))));
    const content = h('div', { class: 'admin-content' });
    R.main.appendChild(h('div', { class: 'admin' }, nav, content));
    const holder = { content };
    const pages = {
      users: adminUsers, departments: adminDepartments, bots: adminBots, knowledge: adminKnowledge,
      channels: adminChannels, webhooks: adminWebhooks, plugins: adminPlugins,
    };
    pages[key](holder);
  }

  function adminHead(holder, title, sub, tools) {
    clear(holder.content);
    const body = h('div', { class: 'page-body' });
    holder.content.appendChild(h('div', { class: 'page' },
      h('header', { class: 'page-head' },
        h('div', { class: 'page-head-text' }, h('h1', { class: 'page-title', text: title }), sub ? h('p', { class: 'page-sub' }, sub) : null),
        tools ? h('div', { class: 'page-tools' }, tools) : null),
      body));
    return body;
  }

  function loadingBlock(text) {
    return h('div', { class: 'card card--pad loading-block' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), h('span', { text: text || 'Loading…' }));
  }

  function errorBlock(e, what) {
    const missing = e.status === 404 || e.status === 405;
    return h('div', { class: 'card empty-state' },
      h('div', { class: 'list-empty-icon list-empty-icon--red' }, icon('alert')),
      h('p', { class: 'list-empty-title', text: missing ? what + ' are not available on this server yet' : 'Could not load ' + what.toLowerCase() }),
      h('p', { class: 'list-empty-sub', text: e.message }));
  }

  function field(label, input, help) {
    const id = input.id || ('f-' + Math.random().toString(36).slice(2, 9));
    input.id = id;
    return h('div', { class: 'field' }, h('label', { for: id, text: label }), input, help ? h('p', { class: 'field-help', text: help }) : null);
  }

  function checkField(label, input, help) {
    const id = input.id || ('f-' + Math.random().toString(36).slice(2, 9));
    input.id = id;
    return h('div', { class: 'field field--check' },
      h('label', { class: 'switch', for: id }, input, h('span', { class: 'switch-track', 'aria-hidden': 'true' }), h('span', { class: 'switch-label', text: label })),
      help ? h('p', { class: 'field-help', text: help }) : null);
  }

  function stale(holder) {
    return !holder.content.isConnected;
  }

  // --- users ------------------------------------------------------------------------

  /**
   * An admin page with an "Add" button that opens a form above a list.
   * `render(result)` turns the GET answer into the list's content.
   */
  function adminListPage(holder, o) {
    const addBtn = h('button', { class: 'btn btn-primary', type: 'button' }, icon('plus'), o.addLabel);
    const body = adminHead(holder, o.title, o.blurb, addBtn);
    const formSlot = h('div');
    const listSlot = h('div');
    append(body, [formSlot, listSlot]);
    listSlot.appendChild(loadingBlock('Loading ' + o.title.toLowerCase() + '…'));
    addBtn.addEventListener('click', () => {
      if (formSlot.firstChild) {
        clear(formSlot);
        return;
      }
      formSlot.appendChild(o.form(() => {
        clear(formSlot);
        load();
      }, () => clear(formSlot)));
      const first = formSlot.querySelector('input');
      if (first) first.focus();
    });
    async function load() {
      try {
        const res = await api('GET', o.path);
        if (stale(holder)) return;
        clear(listSlot).appendChild(o.render(res, load));
      } catch (e) {
        if (stale(holder)) return;
        clear(listSlot).appendChild(errorBlock(e, o.title));
      }
    }
    load();
  }

  async function adminUsers(holder) {
    adminListPage(holder, {
      title: 'Users',
      blurb: 'Everyone who can sign in to the inbox, and what they may do.',
      addLabel: 'Add user',
      path: '/api/v1/users',
      form: addUserForm,
      render: (res, reload) => {
        const tokens = h('div', { class: 'tokens-slot' });
        loadTokens(tokens);
        return h('div', null, usersTable((res && res.users) || [], reload), tokens);
      },
    });
  }

  /** The API tokens: yours, or everyone's for admins; each can be revoked. */
  async function loadTokens(slot) {
    clear(slot).appendChild(loadingBlock('Loading API tokens…'));
    let tokens;
    try {
      const res = await api('GET', '/api/v1/tokens');
      tokens = (res && res.tokens) || [];
    } catch (e) {
      clear(slot).appendChild(errorBlock(e, 'API tokens'));
      return;
    }
    const created = h('div', { class: 'token-created', hidden: true, 'aria-live': 'polite' });
    const label = h('input', { class: 'input', type: 'text', maxlength: '100', placeholder: 'e.g. reporting script', autocomplete: 'off', 'data-testid': 'token-name' });
    const make = h('button', { class: 'btn btn-secondary', type: 'submit', 'data-testid': 'token-create' }, icon('plus'), 'Create token');
    const form = h('form', { class: 'token-form', novalidate: true, 'aria-label': 'Create an API token' },
      field('Label', label), make);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      make.disabled = true;
      try {
        const res = await api('POST', '/api/v1/tokens', { name: label.value.trim() || 'api' });
        await loadTokens(slot);
        const shown = slot.querySelector('.token-created');
        if (shown && res && res.token) {
          shown.hidden = false;
          append(clear(shown), [
            h('p', { text: 'Copy this token now: it is not shown again. Send it as "Authorization: Bearer <token>".' }),
            h('code', { class: 'mono token-secret', 'data-testid': 'token-secret', text: res.token })]);
        }
      } catch (ex) {
        report(ex);
        make.disabled = false;
      }
    });
    const tbody = h('tbody');
    for (const t of tokens) {
      const revoke = confirmButton('Revoke', async () => {
        await api('DELETE', '/api/v1/tokens/' + enc(t.id));
        toast('Token "' + t.name + '" revoked: it no longer works.', 'success');
        loadTokens(slot);
      }, 'token-revoke');
      tbody.appendChild(h('tr', { 'data-token-id': t.id },
        h('td', null, h('span', { class: 'cell-strong', text: t.name })),
        h('td', { class: 'cell-muted', text: (t.user && (t.user.name || t.user.email)) || '—' }),
        h('td', { class: 'cell-muted hide-sm', text: t.created_at ? fullDate(t.created_at) : '—' }),
        h('td', { class: 'cell-muted', text: t.last_used_at ? fullDate(t.last_used_at) : 'Never' }),
        h('td', null, revoke)));
    }
    if (!tokens.length) tbody.appendChild(h('tr', null, h('td', { colspan: '5', class: 'cell-empty', text: 'No API tokens.' })));
    clear(slot).appendChild(h('section', { class: 'tokens-section', 'aria-label': 'API tokens' },
      h('h2', { class: 'form-section', text: 'API tokens' }),
      h('p', { class: 'field-help section-help', text: 'Scripts and integrations sign in with these. A revoked token stops working at once.' }),
      h('div', { class: 'card card--pad' }, form, created),
      h('div', { class: 'card table-card' }, h('table', { class: 'table', 'data-testid': 'tokens-table' },
        h('thead', null, h('tr', null, ['Label', 'User', 'Created', 'Last used', ''].map((t) => h('th', { scope: 'col', text: t, class: t === 'Created' ? 'hide-sm' : null })))),
        tbody))));
  }

  function usersTable(users, reload) {
    const tbody = h('tbody');
    for (const u of users) {
      const isMe = S.me && u.id === S.me.id;
      const remove = isMe ? null : confirmButton('Remove', async () => {
        await api('DELETE', '/api/v1/users/' + enc(u.id));
        toast(u.name + ' was removed: they can no longer sign in, and the conversations they held are back in the queue.', 'success');
        reload();
      }, 'user-remove', 'trash');
      if (remove) remove.title = 'Remove ' + u.name;
      const summary = h('span', { class: 'cell-muted routing-summary hide-sm', text: routingSummary(u) });
      const edit = h('button', {
        class: 'btn btn-secondary btn-sm', type: 'button', 'aria-expanded': 'false', 'data-testid': 'user-edit',
        'aria-label': 'Routing and notifications of ' + u.name,
      }, icon('edit'), h('span', { text: 'Routing' }));
      const tr = h('tr', { 'data-user-id': u.id },
        h('td', null, h('span', { class: 'cell-user' }, avatar(u.name, u.id, 'avatar--sm'), h('span', null, h('span', { class: 'cell-strong', text: u.name }), S.me && u.id === S.me.id ? h('span', { class: 'you-tag', text: 'You' }) : null, h('span', { class: 'cell-sub', text: u.email })))),
        h('td', { class: 'cell-muted hide-sm', text: u.email }),
        h('td', null, roleCell(u)),
        h('td', null, h('span', { class: 'presence-cell' }, h('span', { class: 'presence-dot presence-' + (u.presence || 'offline') }), words(u.presence || 'offline'))),
        h('td', { class: 'cell-muted', text: u.created_at ? new Date(ts(u.created_at)).toLocaleDateString() : '—' }),
        h('td', null, h('span', { class: 'routing-cell' }, summary, edit, remove)));
      edit.addEventListener('click', () => toggleUserEditor(u, tr, edit, summary));
      tbody.appendChild(tr);
    }
    if (!users.length) tbody.appendChild(h('tr', null, h('td', { colspan: '6', class: 'cell-empty', text: 'No users yet.' })));
    return h('div', { class: 'card table-card' }, h('table', { class: 'table' },
      h('thead', null, h('tr', null, ['Name', 'Email', 'Role', 'Presence', 'Added', 'Routing'].map((t) => h('th', { scope: 'col', text: t, class: t === 'Email' ? 'hide-sm' : null })))),
      tbody));
  }

  function roleCell(u) {
    const sel = h('select', { class: 'select select--sm', 'aria-label': 'Role of ' + u.name, disabled: S.me && u.id === S.me.id && u.role === 'owner' },
      ROLES.map((r) => h('option', { value: r, selected: r === u.role, text: words(r) })));
    const status = h('span', { class: 'save-status', 'aria-live': 'polite' });
    sel.addEventListener('change', async () => {
      const prev = u.role;
      sel.disabled = true;
      status.textContent = 'Saving…';
      status.className = 'save-status';
      try {
        const res = await api('PATCH', '/api/v1/users/' + enc(u.id), { role: sel.value });
        u.role = (res && res.user && res.user.role) || sel.value;
        status.textContent = 'Saved';
        status.className = 'save-status is-ok';
        if (S.me && u.id === S.me.id) {
          S.me.role = u.role;
          renderRail();
        }
      } catch (e) {
        sel.value = prev;
        status.textContent = '';
        report(e);
      } finally {
        sel.disabled = false;
        setTimeout(() => {
          if (status.classList.contains('is-ok')) status.textContent = '';
        }, 2500);
      }
    });
    return h('span', { class: 'role-cell' }, sel, status);
  }

  function routingSummary(u) {
    const depts = (u.departments || []).length ? u.departments.join(', ') : 'All departments';
    return depts + ' · ' + (u.capacity ? 'up to ' + u.capacity : 'no limit');
  }

  /** Opens the routing editor in a row under the user's row, or closes it. */
  function toggleUserEditor(u, tr, btn, summary) {
    const next = tr.nextElementSibling;
    if (next && next.classList.contains('editor-row')) {
      next.remove();
      btn.setAttribute('aria-expanded', 'false');
      btn.focus();
      return;
    }
    const close = () => toggleUserEditor(u, tr, btn, summary);
    const saved = () => {
      summary.textContent = routingSummary(u);
    };
    const row = h('tr', { class: 'editor-row' }, h('td', { colspan: '6' }, userRoutingForm(u, saved, close)));
    tr.after(row);
    btn.setAttribute('aria-expanded', 'true');
    const first = row.querySelector('input');
    if (first) first.focus();
  }

  function userRoutingForm(u, onSaved, onCancel) {
    const uid = 'user-' + String(u.id).replace(/[^A-Za-z0-9_-]/g, '_');
    const expertise = h('input', { class: 'input', type: 'text', id: uid + '-expertise', value: (u.expertise || []).join(', '), placeholder: 'refund, shipping', autocomplete: 'off', 'data-testid': 'user-expertise' });
    const capacity = h('input', { class: 'input', type: 'number', min: '0', max: '1000', step: '1', id: uid + '-capacity', value: String(u.capacity ?? 0), 'data-testid': 'user-capacity' });
    const prefs = u.notifications || {};
    const notify = NOTIFY_PREFS.map(([key, label]) => [key, label, h('input', { type: 'checkbox', id: uid + '-notify-' + key, checked: prefs[key] !== false, 'data-testid': 'user-notify-' + key })]);
    const depts = h('fieldset', { class: 'fieldset' }, h('legend', { text: 'Departments' }),
      h('div', { class: 'loading-inline' }, h('span', { class: 'spinner spinner--sm', 'aria-hidden': 'true' }), 'Loading departments…'));
    let deptChecks = null;
    loadDepartments().then((list) => {
      deptChecks = fillDepartmentChecks(depts, list, u.departments || [], uid);
    }).catch((e) => {
      depts.lastChild.replaceWith(h('p', { class: 'field-help', text: 'Departments could not be loaded: ' + e.message }));
    });
    const err = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const status = h('span', { class: 'save-status', 'aria-live': 'polite' });
    const submit = h('button', { class: 'btn btn-primary', type: 'submit', text: 'Save', 'data-testid': 'user-save' });
    const form = h('form', { class: 'user-editor', novalidate: true, 'aria-label': 'Routing and notifications of ' + u.name },
      depts,
      h('div', { class: 'form-grid' },
        field('Expertise (comma-separated topics)', expertise, 'Intent or knowledge-base entry ids this person knows best.'),
        field('Capacity', capacity, 'Conversations held at once before new visitors queue and automatic assignment skips this person; 0 = no limit.')),
      h('fieldset', { class: 'fieldset' }, h('legend', { text: 'Notify in the inbox when' }),
        h('div', { class: 'switch-row' }, notify.map(([, label, input]) => checkField(label, input)))),
      err,
      h('div', { class: 'form-actions' }, status, h('button', { class: 'btn btn-ghost', type: 'button', text: 'Close', onclick: onCancel }), submit));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      err.hidden = true;
      const cap = wholeNumber(capacity, 0, 1000);
      if (cap === null) {
        showError(err, 'Capacity must be a whole number from 0 (no limit) to 1000.');
        capacity.focus();
        return;
      }
      const body = {
        expertise: commaList(expertise.value),
        capacity: cap,
        notifications: Object.fromEntries(notify.map(([key, , input]) => [key, input.checked])),
      };
      if (deptChecks) body.departments = deptChecks.filter((c) => c.checked).map((c) => c.value);
      submit.disabled = true;
      status.className = 'save-status';
      status.textContent = 'Saving…';
      try {
        const res = await api('PATCH', '/api/v1/users/' + enc(u.id), body);
        Object.assign(u, body, (res && res.user) || {});
        if (S.me && u.id === S.me.id) S.me.notifications = u.notifications;
        status.className = 'save-status is-ok';
        status.textContent = 'Saved';
        onSaved();
      } catch (ex) {
        status.textContent = '';
        showError(err, ex.message);
      } finally {
        submit.disabled = false;
      }
    });
    return form;
  }

  /** Fills `box` with one checkbox per department; returns them, or null when there are none to choose. */
  function fillDepartmentChecks(box, list, chosen, uid) {
    box.lastChild.remove();
    if (!list.length) {
      box.appendChild(h('p', { class: 'field-help', text: 'No departments are configured in baton.toml: everyone works in every department.' }));
      return null;
    }
    const checks = list.map((d) => h('input', { type: 'checkbox', value: d.id, id: uid + '-dept-' + d.id.replace(/[^A-Za-z0-9_-]/g, '_'), checked: chosen.includes(d.id), 'data-testid': 'user-department' }));
    box.appendChild(h('div', { class: 'check-grid' }, checks.map((c, i) => h('label', { class: 'check', for: c.id }, c, h('span', { text: list[i].name }),
      list[i].name !== list[i].id ? h('code', { class: 'mono muted', text: list[i].id }) : null))));
    box.appendChild(h('p', { class: 'field-help', text: 'None ticked: every department.' }));
    return checks;
  }

  function showError(el, message) {
    el.textContent = message;
    el.hidden = false;
  }

  /** The input's value when it is a whole number within min..max, else null. */
  function wholeNumber(input, min, max) {
    const t = input.value.trim();
    const n = Number(t);
    return t !== '' && Number.isInteger(n) && n >= min && n <= max ? n : null;
  }

  function loadDepartments(force) {
    if (S.departments && !force) return S.departments;
    const p = api('GET', '/api/v1/departments').then((res) => (res && res.departments) || []);
    S.departments = p;
    p.catch(() => {
      if (S.departments === p) S.departments = null;
    });
    return p;
  }

  function addUserForm(onDone, onCancel) {
    const name = h('input', { class: 'input', type: 'text', required: true, autocomplete: 'off', placeholder: 'Jane Doe' });
    const email = h('input', { class: 'input', type: 'email', required: true, autocomplete: 'off', placeholder: 'jane@company.com' });
    const password = h('input', { class: 'input', type: 'password', required: true, minlength: '8', autocomplete: 'new-password', placeholder: 'At least 8 characters' });
    const role = h('select', { class: 'select' }, ROLES.map((r) => h('option', { value: r, selected: r === 'responder', text: words(r) })));
    const err = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const submit = h('button', { class: 'btn btn-primary', type: 'submit', text: 'Create user' });
    const form = h('form', { class: 'card card--pad form-card', novalidate: true },
      h('h2', { class: 'card-title', text: 'Add a user' }),
      h('div', { class: 'form-grid' },
        field('Name', name), field('Email', email), field('Password', password, 'At least 8 characters. Share it with them privately.'),
        field('Role', role, 'Responders claim and reply; viewers only read; admins also manage settings.')),
      err,
      h('div', { class: 'form-actions' }, h('button', { class: 'btn btn-ghost', type: 'button', text: 'Cancel', onclick: onCancel }), submit));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      err.hidden = true;
      if (!name.value.trim() || !email.value.trim() || password.value.length < 8) {
        err.textContent = password.value.length < 8 && name.value.trim() && email.value.trim() ? 'The password must be at least 8 characters.' : 'Fill in the name, email and password.';
        err.hidden = false;
        return;
      }
      submit.disabled = true;
      try {
        const res = await api('POST', '/api/v1/users', { email: email.value.trim(), name: name.value.trim(), password: password.value, role: role.value });
        toast('Added ' + ((res && res.user && res.user.name) || name.value.trim()) + '.', 'success');
        S.agents = null;
        onDone();
      } catch (ex) {
        submit.disabled = false;
        err.textContent = ex.message;
        err.hidden = false;
      }
    });
    return form;
  }

  // --- bots ---------------------------------------------------------------------------

  function emptyState(iconName, title, ...sub) {
    return h('div', { class: 'card empty-state' }, h('div', { class: 'list-empty-icon' }, icon(iconName)),
      h('p', { class: 'list-empty-title', text: title }),
      h('p', { class: 'list-empty-sub' }, ...sub));
  }

  /**
   * An admin page that lists `res[o.key]` from `GET o.path`: an empty state
   * when there is nothing, else whatever `o.render(items)` builds.
   */
  async function adminFetchPage(holder, o) {
    const body = adminHead(holder, o.title, o.blurb);
    body.appendChild(loadingBlock('Loading ' + o.title.toLowerCase() + '…'));
    try {
      const res = await api('GET', o.path);
      if (stale(holder)) return;
      clear(body);
      const items = (res && res[o.key]) || [];
      body.appendChild(items.length ? o.render(items) : o.empty());
    } catch (e) {
      if (stale(holder)) return;
      clear(body).appendChild(errorBlock(e, o.title));
    }
  }

  async function adminBots(holder) {
    const depts = await loadDepartments().catch(() => []);
    if (stale(holder)) return;
    adminFetchPage(holder, {
      title: 'Bots',
      blurb: 'The greeting, the hand-over rules and what happens after a hand-over, for each bot.',
      path: '/api/v1/bots',
      key: 'bots',
      empty: () => emptyState('bot', 'No bots configured', 'Bots are defined in the Baton configuration file.'),
      render: (bots) => {
        const stack = h('div');
        for (const b of bots) stack.appendChild(botForm(b, depts));
        return stack;
      },
    });
  }

  /**
   * A bot's settings form, built from parts. Each part gives its `nodes`,
   * an optional `check()` that returns what is wrong (or null), and
   * `collect(payload)` that writes its fields into the PUT body.
   */
  function botForm(b, depts) {
    const ho = b.handover || {};
    const uid = 'bot-' + String(b.id).replace(/[^A-Za-z0-9_-]/g, '_');
    const parts = [
      botBasicsPart(b, uid),
      handoverBasicsPart(ho, uid),
      triggersPart(ho, uid),
      routingPart(ho, uid, depts),
      actionsPart(ho.actions, uid, depts),
    ];
    const status = h('span', { class: 'save-status', 'aria-live': 'polite' });
    const err = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const save = h('button', { class: 'btn btn-primary', type: 'submit', text: 'Save changes', 'data-testid': 'bot-save' });
    const form = h('form', { class: 'card form-card bot-card', novalidate: true, 'data-testid': 'bot-form', 'data-bot-id': b.id },
      h('div', { class: 'card-head' },
        h('span', { class: 'avatar avatar--md avatar--bot', 'aria-hidden': 'true' }, icon('bot')),
        h('div', null, h('h2', { class: 'card-title', text: b.name || b.id }), h('p', { class: 'card-sub' }, 'ID ', h('code', { class: 'mono', text: b.id }))),
        h('span', { class: 'pill ' + (ho.enabled ? 'pill--active' : 'pill--resolved') }, h('span', { class: 'pill-dot' }), ho.enabled ? 'Hand-over on' : 'Hand-over off')),
      h('div', { class: 'card-body' }, parts.map((p) => p.nodes)),
      h('div', { class: 'card-foot' }, err, status, save));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      err.hidden = true;
      const problem = parts.map((p) => (p.check ? p.check() : null)).find(Boolean);
      if (problem) {
        showError(err, problem);
        return;
      }
      const payload = { handover: {} };
      for (const p of parts) p.collect(payload);
      save.disabled = true;
      status.className = 'save-status';
      status.textContent = 'Saving…';
      try {
        const res = await api('PUT', '/api/v1/bots/' + enc(b.id), payload);
        const nb = (res && res.bot) || Object.assign({}, b, payload);
        const fresh = botForm(nb, depts);
        form.replaceWith(fresh);
        const st = fresh.querySelector('.save-status');
        st.className = 'save-status is-ok';
        st.textContent = 'Saved';
        setTimeout(() => {
          st.textContent = '';
        }, 3000);
      } catch (ex) {
        status.textContent = '';
        showError(err, ex.message);
      } finally {
        save.disabled = false;
      }
    });
    return form;
  }

  function formSection(title, ...kids) {
    return [h('h3', { class: 'form-section', text: title }), ...kids];
  }

  function numberInput(id, value, min, max, step) {
    return h('input', { class: 'input', type: 'number', id, min, max, step: step || '1', value: String(value ?? 0) });
  }

  function botBasicsPart(b, uid) {
    const name = h('input', { class: 'input', type: 'text', id: uid + '-name', value: b.name || '' });
    const greeting = h('textarea', { class: 'input textarea', id: uid + '-greeting', rows: '2', value: b.greeting || '' });
    return {
      nodes: formSection('Bot', h('div', { class: 'form-grid' },
        field('Name', name),
        field('Greeting', greeting, 'The first message visitors see.'))),
      collect: (p) => {
        p.name = name.value.trim();
        p.greeting = greeting.value;
      },
    };
  }

  function handoverBasicsPart(ho, uid) {
    const f = {
      enabled: h('input', { type: 'checkbox', id: uid + '-enabled', checked: !!ho.enabled }),
      monitoring: h('input', { type: 'checkbox', id: uid + '-monitoring', checked: !!ho.monitoring }),
      rba: numberInput(uid + '-rba', ho.request_button_after, '0', '100'),
      pause: numberInput(uid + '-pause', ho.pause_bot_for_seconds, '0'),
      online: h('textarea', { class: 'input textarea', id: uid + '-online', rows: '2', value: ho.online_message || '' }),
      offline: h('textarea', { class: 'input textarea', id: uid + '-offline', rows: '2', value: ho.offline_message || '' }),
    };
    return {
      nodes: formSection('Hand-over', h('div', { class: 'form-grid' },
        checkField('Allow hand-over to humans', f.enabled, 'Visitors can reach your team from this bot.'),
        checkField('Monitor bot conversations', f.monitoring, 'Show conversations in the Bot tab while the bot is talking.'),
        field('Show "Talk to a human" after', f.rba, 'How many bot answers the visitor sees before the button appears (0 = from the start).'),
        field('Pause the bot after a hand-over (seconds)', f.pause, 'The bot stays quiet this long after a human takes over.'),
        field('Message when agents are online', f.online),
        field('Message when no one is online', f.offline))),
      check: () => {
        if (wholeNumber(f.rba, 0, 100) === null) return '"Show Talk to a human after" must be a whole number from 0 to 100.';
        if (wholeNumber(f.pause, 0, 30 * 86400) === null) return 'The bot pause must be a whole number of seconds, from 0 to 2592000 (30 days).';
        return null;
      },
      collect: (p) => Object.assign(p.handover, {
        enabled: f.enabled.checked,
        monitoring: f.monitoring.checked,
        request_button_after: wholeNumber(f.rba, 0, 100),
        pause_bot_for_seconds: wholeNumber(f.pause, 0, 30 * 86400),
        online_message: f.online.value,
        offline_message: f.offline.value,
      }),
    };
  }

  const COUNTERS = [
    ['cycle_count', 'Hand over after this many unanswered questions', '0 = off.'],
    ['failed_to_resolve', 'Hand over after this many "that did not help"', '0 = off.'],
    ['repeated_requests', 'Asks for a human, in words, before it happens', '1 = the first time. The button always works.'],
  ];

  function triggersPart(ho, uid) {
    const counters = COUNTERS.map(([key, label, help]) => [key, label, help, numberInput(uid + '-' + key, ho[key], '0')]);
    const lack = h('input', { type: 'checkbox', id: uid + '-lack', checked: ho.lack_of_information !== false });
    const frustration = frustrationInputs(ho.frustration, uid);
    const phrases = h('textarea', { class: 'input textarea', id: uid + '-phrases', rows: '3', value: (ho.phrases || []).join('\n'), placeholder: 'put me through to someone' });
    const intents = h('input', { class: 'input', type: 'text', id: uid + '-intents', value: (ho.intents || []).join(', '), placeholder: 'cancel_contract, complaint', autocomplete: 'off' });
    return {
      nodes: formSection('When the bot hands over', h('div', { class: 'form-grid' },
        counters.map(([, label, help, input]) => field(label, input, help)),
        checkField('Hand over when the knowledge base has no answer', lack, 'The topic is known but nothing answers it.'),
        frustration.node,
        field('More ways to ask for a human (one per line)', phrases, 'On top of the built-in phrases in seven languages.'),
        field('Intents that always go to a human (comma-separated)', intents))),
      check: () => {
        for (const [, label, , input] of counters) {
          if (wholeNumber(input, 0, 1000000) === null) return '"' + label + '" must be a whole number, 0 or more.';
        }
        return frustration.check();
      },
      collect: (p) => {
        for (const [key, , , input] of counters) p.handover[key] = wholeNumber(input, 0, 1000000);
        p.handover.lack_of_information = lack.checked;
        p.handover.frustration = frustration.value();
        p.handover.phrases = lineList(phrases.value);
        p.handover.intents = commaList(intents.value);
      },
    };
  }

  /** Frustration is off (false) or a sentiment threshold in -1..0. */
  function frustrationInputs(current, uid) {
    const on = typeof current === 'number';
    const mode = h('select', { class: 'select', id: uid + '-frustration', 'data-testid': 'bot-frustration' },
      h('option', { value: 'off', text: 'Off', selected: !on }),
      h('option', { value: 'on', text: 'At or below a threshold', selected: on }));
    const threshold = h('input', {
      class: 'input input--narrow', type: 'number', min: '-1', max: '-0.01', step: '0.05', id: uid + '-frustration-threshold',
      value: String(on ? current : -0.6), disabled: !on, 'aria-label': 'Frustration threshold, from -1 to 0',
    });
    mode.addEventListener('change', () => {
      threshold.disabled = mode.value === 'off';
    });
    const node = h('div', { class: 'field' },
      h('label', { for: mode.id, text: 'Hand over on frustration' }),
      h('div', { class: 'input-row' }, mode, threshold),
      h('p', { class: 'field-help', text: 'Sentiment runs from -1 (angry) to 0; a message at or below the threshold hands over.' }));
    const number = () => Number(threshold.value);
    return {
      node,
      check: () => (mode.value === 'on' && !(threshold.value.trim() !== '' && number() >= -1 && number() < 0)
        ? 'The frustration threshold must be from -1 up to (not including) 0.' : null),
      value: () => (mode.value === 'on' ? number() : false),
    };
  }

  const CONTACT_FIELDS = [['email', 'Email'], ['name', 'Name'], ['phone', 'Phone']];

  function departmentOptions(depts, current, noneLabel) {
    const options = [h('option', { value: '', text: noneLabel, selected: !current })];
    for (const d of depts) {
      options.push(h('option', { value: d.id, text: d.name && d.name !== d.id ? d.name + ' (' + d.id + ')' : d.id, selected: d.id === current }));
    }
    // Keep a department the form does not know (e.g. removed from baton.toml) visible rather than dropping it.
    if (current && !depts.some((d) => d.id === current)) options.push(h('option', { value: current, text: current, selected: true }));
    return options;
  }

  /** A settings duration in seconds for a number input: 10 → 10, "500ms" → 0.5. */
  function secondsOf(v) {
    if (typeof v === 'number') return v;
    const ms = /^(\d+)ms$/.exec(String(v || '').trim());
    return ms ? Number(ms[1]) / 1000 : Number(v) || 0;
  }

  function routingPart(ho, uid, depts) {
    const dept = h('select', { class: 'select', id: uid + '-department', 'data-testid': 'bot-department' }, departmentOptions(depts, ho.department || '', 'None'));
    const wanted = Array.isArray(ho.collect_contact) ? ho.collect_contact : ho.collect_contact === true ? ['email'] : [];
    const contact = CONTACT_FIELDS.map(([key]) => h('input', { type: 'checkbox', value: key, id: uid + '-collect-' + key, checked: wanted.includes(key) }));
    const queue = h('textarea', { class: 'input textarea', id: uid + '-queue', rows: '2', value: ho.queue_message || '' });
    const closing = h('textarea', { class: 'input textarea', id: uid + '-closing', rows: '2', value: ho.closing_message || '' });
    const timeout = numberInput(uid + '-action-timeout', secondsOf(ho.action_timeout), '0.1', '3600', 'any');
    return {
      nodes: formSection('Routing and messages',
        h('div', { class: 'form-grid' },
          field('Department', dept, 'Where hand-overs go when no topic routes them elsewhere.'),
          h('fieldset', { class: 'fieldset' }, h('legend', { text: 'Ask for contact details first' }),
            h('div', { class: 'check-row' }, contact.map((c, i) => h('label', { class: 'check', for: c.id }, c, h('span', { text: CONTACT_FIELDS[i][1] })))),
            h('p', { class: 'field-help', text: 'Only what the visitor has not given yet is asked. None ticked: off.' })),
          field('Message while everyone is busy', queue, 'Use {position} for their place in the queue.'),
          field('Closing message', closing, 'What the "closing message" action says when it names no text.'),
          field('Action timeout (seconds)', timeout, 'How long one action after a hand-over may take.'))),
      check: () => {
        const n = Number(timeout.value);
        return timeout.value.trim() === '' || !(n > 0) ? 'The action timeout must be a number of seconds above 0.' : null;
      },
      collect: (p) => {
        const n = Number(timeout.value);
        Object.assign(p.handover, {
          department: dept.value || null,
          collect_contact: contact.filter((c) => c.checked).map((c) => c.value),
          queue_message: queue.value,
          closing_message: closing.value,
          action_timeout: Number.isInteger(n) ? n : Math.round(n * 1000) + 'ms',
        });
      },
    };
  }

  // --- the post-hand-over actions editor -----------------------------------------------

  const ACTION_TYPES = [
    ['assign', 'Assign'], ['task', 'Create a task'], ['notify', 'Notify the team'], ['closing_message', 'Closing message'],
    ['pause_bot', 'Pause the bot'], ['tags', 'Add tags'], ['webhook', 'Call a webhook'],
  ];
  const ASSIGN_MODES = [['round_robin', 'Round robin'], ['least_busy', 'Least busy']];

  // Each type's fields. Kinds: text, email, url, textarea, duration (seconds or "15m"), list (comma-separated), mode, department.
  const ACTION_FIELDS = {
    assign: [
      { key: 'to', label: 'Assign to (staff email)', kind: 'email', help: 'Empty: pick someone in the department.' },
      { key: 'department', label: 'Department', kind: 'department' },
      { key: 'mode', label: 'How to pick', kind: 'mode' },
    ],
    task: [
      { key: 'title', label: 'Title', kind: 'text' },
      { key: 'assignee', label: 'Assignee (staff email)', kind: 'email', help: 'Empty: whoever has the conversation.' },
      { key: 'due', label: 'Due after', kind: 'duration', required: true, help: 'Seconds, or e.g. 30m, 4h, 1d.' },
      { key: 'description', label: 'Description', kind: 'textarea' },
    ],
    notify: [{ key: 'to', label: 'Notify (staff email)', kind: 'email', help: 'Empty: the assignee, else every owner.' }],
    closing_message: [{ key: 'text', label: 'Message to the visitor', kind: 'textarea', help: 'Empty: the closing message above.' }],
    pause_bot: [{ key: 'for', label: 'Pause the bot for', kind: 'duration', required: true, help: 'Seconds, or e.g. 15m, 2h.' }],
    tags: [{ key: 'tags', label: 'Tags (comma-separated)', kind: 'list', required: true }],
    webhook: [
      { key: 'url', label: 'URL', kind: 'url', required: true },
      { key: 'secret', label: 'Signing secret (optional)', kind: 'text' },
    ],
  };
  const ACTION_DEFAULTS = { task: { due: '1d' }, pause_bot: { for: '15m' } };

  function actionLabel(type) {
    const known = ACTION_TYPES.find(([t]) => t === type);
    return known ? known[1] : words(type);
  }

  /** An action as the form edits it: its type and each field as text. */
  function actionDraft(a) {
    const values = {};
    for (const f of ACTION_FIELDS[a.type] || []) {
      const v = a[f.key];
      if (v === undefined || v === null) continue;
      values[f.key] = f.kind === 'duration' ? durationText(v) : f.kind === 'list' ? [].concat(v).join(', ') : String(v);
    }
    return { type: a.type, values };
  }

  function newActionDraft(type) {
    return { type, values: Object.assign({}, ACTION_DEFAULTS[type]) };
  }

  function actionFromDraft(d) {
    const out = { type: d.type };
    for (const f of ACTION_FIELDS[d.type]) {
      const raw = String(d.values[f.key] || '').trim();
      if (f.kind === 'list') out[f.key] = commaList(raw);
      else if (raw) out[f.key] = f.kind === 'duration' ? durationValue(raw) : raw;
    }
    return out;
  }

  function actionProblem(drafts) {
    for (const [i, d] of drafts.entries()) {
      if (!ACTION_FIELDS[d.type]) return 'Action ' + (i + 1) + ' has an unknown type, "' + d.type + '".';
      for (const f of ACTION_FIELDS[d.type]) {
        const raw = String(d.values[f.key] || '').trim();
        const empty = f.kind === 'list' ? !commaList(raw).length : !raw;
        if (f.required && empty) return 'Action ' + (i + 1) + ' (' + actionLabel(d.type) + ') needs "' + f.label + '".';
      }
    }
    return null;
  }

  function actionsPart(actions, uid, depts) {
    const drafts = (actions || []).map(actionDraft);
    const list = h('ol', { class: 'action-list', 'data-testid': 'action-list' });
    const addType = h('select', { class: 'select select--sm', id: uid + '-add-action', 'aria-label': 'Type of action to add' },
      ACTION_TYPES.map(([v, l]) => h('option', { value: v, text: l })));
    const addBtn = h('button', { class: 'btn btn-secondary btn-sm', type: 'button', 'data-testid': 'action-add' }, icon('plus'), 'Add action');

    // Redraws the list, then focuses `selector` inside item `index` (or, failing that, its type select).
    function redraw(index, selector) {
      clear(list);
      if (!drafts.length) list.appendChild(h('li', { class: 'action-empty', text: 'No actions: a handed-over conversation simply waits to be claimed.' }));
      drafts.forEach((d, i) => list.appendChild(actionItem(d, i, drafts.length, uid, depts, ops)));
      const item = index === undefined ? null : list.children[index];
      if (!item) return;
      const target = (selector && item.querySelector(selector + ':not([disabled])')) || item.querySelector('[data-role="type"]');
      if (target) target.focus();
    }
    const ops = {
      move(i, delta) {
        const j = i + delta;
        [drafts[i], drafts[j]] = [drafts[j], drafts[i]];
        redraw(j, '[data-role="' + (delta < 0 ? 'up' : 'down') + '"]');
      },
      remove(i) {
        drafts.splice(i, 1);
        if (drafts.length) redraw(Math.min(i, drafts.length - 1));
        else {
          redraw();
          addType.focus();
        }
      },
      retype(i, type) {
        drafts[i] = newActionDraft(type);
        redraw(i);
      },
    };
    addBtn.addEventListener('click', () => {
      drafts.push(newActionDraft(addType.value));
      redraw(drafts.length - 1);
    });
    redraw();
    return {
      nodes: formSection('After the hand-over',
        h('p', { class: 'field-help section-help', text: 'These actions run in order each time a conversation from this bot is handed over.' }),
        list,
        h('div', { class: 'action-add' }, addType, addBtn)),
      check: () => actionProblem(drafts),
      collect: (p) => {
        p.handover.actions = drafts.map(actionFromDraft);
      },
    };
  }

  function actionItem(d, i, count, uid, depts, ops) {
    const base = uid + '-action-' + i;
    const n = i + 1;
    const type = h('select', { class: 'select select--sm', id: base + '-type', 'data-role': 'type', 'data-testid': 'action-type' },
      ACTION_TYPES.map(([v, l]) => h('option', { value: v, text: l, selected: v === d.type })));
    type.addEventListener('change', () => ops.retype(i, type.value));
    const tool = (name, label, role, disabled, run) => h('button', {
      class: 'icon-btn', type: 'button', 'aria-label': label + ' (action ' + n + ')', title: label,
      'data-role': role, 'data-testid': 'action-' + role, disabled, onclick: run,
    }, icon(name));
    return h('li', { class: 'action-item', 'data-testid': 'action-item' },
      h('div', { class: 'action-item-head' },
        h('span', { class: 'action-num', 'aria-hidden': 'true', text: String(n) }),
        h('label', { class: 'sr-only', for: type.id, text: 'Action ' + n + ' type' }),
        type,
        h('div', { class: 'action-tools' },
          tool('arrowUp', 'Move up', 'up', i === 0, () => ops.move(i, -1)),
          tool('arrowDown', 'Move down', 'down', i === count - 1, () => ops.move(i, 1)),
          tool('trash', 'Remove', 'remove', false, () => ops.remove(i)))),
      h('div', { class: 'form-grid action-fields' }, (ACTION_FIELDS[d.type] || []).map((f) => actionField(d, f, base, depts))));
  }

  function actionField(d, f, base, depts) {
    const id = base + '-' + f.key;
    const value = d.values[f.key] || '';
    let input;
    if (f.kind === 'textarea') input = h('textarea', { class: 'input textarea', rows: '2', id, value });
    else if (f.kind === 'mode') input = h('select', { class: 'select', id }, ASSIGN_MODES.map(([v, l]) => h('option', { value: v, text: l, selected: v === (value || 'round_robin') })));
    else if (f.kind === 'department') input = h('select', { class: 'select', id }, departmentOptions(depts, value, 'The conversation’s department'));
    else {
      const type = f.kind === 'email' ? 'email' : f.kind === 'url' ? 'url' : 'text';
      input = h('input', { class: 'input', type, id, value, autocomplete: 'off', required: !!f.required });
    }
    const sync = () => {
      d.values[f.key] = input.value;
    };
    input.addEventListener('input', sync);
    input.addEventListener('change', sync);
    return h('div', { class: f.kind === 'textarea' ? 'field-wide' : null }, field(f.label, input, f.help));
  }

  // --- departments ---------------------------------------------------------------------

  const ASSIGNMENT_LABEL = { manual: 'Manual (agents claim)', round_robin: 'Round robin', least_busy: 'Least busy' };
  const AVAILABILITY = {
    available: ['pill--active', 'Available'],
    busy: ['pill--waiting', 'Busy'],
    offline: ['pill--resolved', 'Offline'],
  };

  async function adminDepartments(holder) {
    adminFetchPage(holder, {
      title: 'Departments',
      blurb: 'Teams that hand-overs are routed to. They are configured in baton.toml ([[departments]]); this page is read-only.',
      path: '/api/v1/departments',
      key: 'departments',
      empty: () => emptyState('layers', 'No departments',
        'Add ', h('code', { class: 'mono', text: '[[departments]]' }), ' to baton.toml to route hand-overs by team, hours and topic.'),
      render: (list) => h('div', { class: 'card-grid' }, list.map(departmentCard)),
    });
  }

  function departmentCard(d) {
    const [availClass, availLabel] = AVAILABILITY[d.availability] || ['pill--resolved', words(d.availability)];
    const hours = d.hours || [];
    const topics = d.topics || [];
    return h('div', { class: 'card dept-card', 'data-testid': 'department' },
      h('div', { class: 'channel-top' },
        h('span', { class: 'channel-icon' }, icon('layers')),
        h('div', { class: 'channel-name' }, h('h2', { class: 'card-title', text: d.name || d.id }), h('code', { class: 'mono card-sub', text: d.id })),
        h('span', { class: 'pill ' + (d.open ? 'pill--active' : 'pill--resolved') }, h('span', { class: 'pill-dot' }), d.open ? 'Open now' : 'Closed')),
      dl([
        ['Agents', h('span', { class: 'pill ' + availClass }, h('span', { class: 'pill-dot' }), availLabel)],
        ['Hours', hours.length ? h('span', { class: 'hours' }, hours.map((x) => h('span', { class: 'mono', text: x }))) : 'Always open'],
        ['Time zone', d.timezone || 'UTC'],
        ['Assignment', ASSIGNMENT_LABEL[d.assignment] || words(d.assignment)],
        ['Topics', topics.length ? h('span', { class: 'chips' }, topics.map((t) => h('span', { class: 'chip chip--code', text: t }))) : h('span', { class: 'muted', text: 'None' })],
      ]));
  }

  // --- knowledge base --------------------------------------------------------------------

  const ENTRY_ID = /^[A-Za-z0-9._-]{1,100}$/;

  function slugify(text) {
    return String(text || '').normalize('NFKD').replace(/[\u0300-\u036f]/g, '').toLowerCase()
      .replace(/[^a-z0-9]+/g, '-').slice(0, 60).replace(/^-+|-+$/g, '');
  }

  function uniqueSlug(text, taken) {
    const base = slugify(text) || 'entry';
    let id = base;
    for (let n = 2; taken.has(id); n++) id = base + '-' + n;
    return id;
  }

  async function adminKnowledge(holder) {
    const addBtn = h('button', { class: 'btn btn-primary', type: 'button', 'data-testid': 'kb-add' }, icon('plus'), 'Add entry');
    const body = adminHead(holder, 'Knowledge base', 'The questions the bot answers. Changes are live at once.', addBtn);
    body.appendChild(loadingBlock('Loading bots…'));
    let bots;
    try {
      const res = await api('GET', '/api/v1/bots');
      bots = (res && res.bots) || [];
    } catch (e) {
      if (!stale(holder)) clear(body).appendChild(errorBlock(e, 'Bots'));
      return;
    }
    if (stale(holder)) return;
    clear(body);
    if (!bots.length) {
      addBtn.disabled = true;
      body.appendChild(emptyState('book', 'No bots configured', 'Bots are defined in the Baton configuration file.'));
      return;
    }
    knowledgeEditor(body, bots, addBtn);
  }

  function knowledgeEditor(body, bots, addBtn) {
    const saved = store.get('kbBot', '');
    const kb = { bot: bots.some((b) => b.id === saved) ? saved : bots[0].id, entries: [], gen: 0 };
    const search = h('input', { class: 'input input--sm', type: 'search', id: 'kb-search', placeholder: 'Search questions and answers', autocomplete: 'off', 'data-testid': 'kb-search' });
    const count = h('span', { class: 'kb-count', 'aria-live': 'polite' });
    const formSlot = h('div');
    const listSlot = h('div', { class: 'stack' });
    let picker = null;
    if (bots.length > 1) {
      picker = h('select', { class: 'select select--sm', id: 'kb-bot', 'data-testid': 'kb-bot' }, bots.map((b) => h('option', { value: b.id, text: b.name || b.id, selected: b.id === kb.bot })));
      picker.addEventListener('change', () => {
        kb.bot = picker.value;
        store.set('kbBot', kb.bot);
        clear(formSlot);
        load();
      });
    }
    body.appendChild(h('div', { class: 'kb-toolbar' },
      picker ? h('label', { class: 'range-field', for: 'kb-bot' }, h('span', { text: 'Bot' }), picker) : null,
      h('div', { class: 'kb-search' }, icon('search', 'icon--sm'), h('label', { class: 'sr-only', for: 'kb-search', text: 'Search entries' }), search),
      count));
    append(body, [formSlot, listSlot]);

    function openForm(entry) {
      const taken = new Set(kb.entries.map((e) => e.id));
      clear(formSlot).appendChild(kbForm(kb.bot, entry, taken, (savedEntry) => {
        clear(formSlot);
        load(savedEntry && savedEntry.id);
      }, () => {
        clear(formSlot);
        addBtn.focus();
      }));
      formSlot.scrollIntoView({ block: 'nearest' });
      formSlot.querySelector('input').focus();
    }
    async function remove(entry) {
      await api('DELETE', '/api/v1/bots/' + enc(kb.bot) + '/knowledge/' + enc(entry.id));
      toast('Deleted "' + entry.question + '".', 'success');
      load();
    }
    function draw() {
      const q = search.value.trim().toLowerCase();
      const shown = kb.entries.filter((e) => !q || [e.id, e.question, e.answer].concat(e.alternatives || []).some((x) => String(x || '').toLowerCase().includes(q)));
      count.textContent = q ? shown.length + ' of ' + kb.entries.length + ' entries' : kb.entries.length + (kb.entries.length === 1 ? ' entry' : ' entries');
      clear(listSlot);
      if (!kb.entries.length) listSlot.appendChild(emptyState('book', 'No entries yet', 'Add the questions your visitors ask, and the answers the bot should give.'));
      else if (!shown.length) listSlot.appendChild(h('p', { class: 'panel-empty', text: 'No entry matches "' + search.value.trim() + '".' }));
      for (const e of shown) listSlot.appendChild(kbEntryCard(e, openForm, remove));
    }
    async function load(focusId) {
      const my = ++kb.gen;
      clear(listSlot).appendChild(loadingBlock('Loading entries…'));
      try {
        const res = await api('GET', '/api/v1/bots/' + enc(kb.bot) + '/knowledge');
        if (my !== kb.gen || !listSlot.isConnected) return;
        kb.entries = (res && res.entries) || [];
        draw();
        const card = focusId && listSlot.querySelector('[data-entry-id="' + CSS.escape(focusId) + '"] [data-testid="kb-edit"]');
        if (card) card.focus();
      } catch (e) {
        if (my !== kb.gen || !listSlot.isConnected) return;
        clear(listSlot).appendChild(errorBlock(e, 'Knowledge entries'));
      }
    }
    search.addEventListener('input', draw);
    addBtn.addEventListener('click', () => openForm(null));
    load();
  }

  function kbEntryCard(e, onEdit, onDelete) {
    const alts = e.alternatives || [];
    const fromFile = e.source !== 'api';
    return h('article', { class: 'card kb-entry', 'data-testid': 'kb-entry', 'data-entry-id': e.id },
      h('div', { class: 'kb-entry-head' },
        h('div', { class: 'kb-entry-titles' },
          h('h2', { class: 'kb-question', text: e.question }),
          h('code', { class: 'mono card-sub', text: e.id })),
        h('span', {
          class: 'chip kb-source kb-source--' + (fromFile ? 'file' : 'api'), 'data-testid': 'kb-source',
          title: fromFile ? 'From the knowledge folder' : 'Added or changed in the inbox', text: fromFile ? 'File' : 'Edited here',
        }),
        e.handover ? h('span', { class: 'chip chip--reason chip--teal', text: 'Hands over' }) : null),
      h('p', { class: 'kb-answer', text: e.answer }),
      alts.length ? h('p', { class: 'kb-alts' }, h('span', { class: 'muted', text: 'Also asked as: ' }), alts.join(' · ')) : null,
      h('div', { class: 'kb-entry-actions' },
        h('button', { class: 'btn btn-secondary btn-sm', type: 'button', 'data-testid': 'kb-edit', onclick: () => onEdit(e) }, icon('edit'), 'Edit'),
        confirmButton('Delete', () => onDelete(e), 'kb-delete')));
  }

  function kbForm(botId, entry, taken, onDone, onCancel) {
    const isNew = !entry;
    const e = entry || { id: '', question: '', alternatives: [], answer: '', buttons: [], handover: false };
    const question = h('input', { class: 'input', type: 'text', id: 'kb-question', maxlength: '500', required: true, value: e.question, 'data-testid': 'kb-question' });
    const id = h('input', { class: 'input mono', type: 'text', id: 'kb-id', maxlength: '100', required: true, value: e.id, readOnly: !isNew, autocomplete: 'off', spellcheck: 'false', 'data-testid': 'kb-id' });
    const alternatives = h('textarea', { class: 'input textarea', id: 'kb-alternatives', rows: '4', value: (e.alternatives || []).join('\n'), 'data-testid': 'kb-alternatives' });
    const answer = h('textarea', { class: 'input textarea', id: 'kb-answer', rows: '5', maxlength: '10000', required: true, value: e.answer, 'data-testid': 'kb-answer' });
    const handover = h('input', { type: 'checkbox', id: 'kb-handover', checked: !!e.handover, 'data-testid': 'kb-handover' });
    // A new entry's id follows the question until someone types an id of their own.
    let idTouched = !isNew;
    id.addEventListener('input', () => {
      idTouched = true;
    });
    question.addEventListener('input', () => {
      if (!idTouched) id.value = uniqueSlug(question.value, taken);
    });
    const buttons = e.buttons || [];
    const err = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const submit = h('button', { class: 'btn btn-primary', type: 'submit', 'data-testid': 'kb-save', text: isNew ? 'Add entry' : 'Save entry' });
    const form = h('form', { class: 'card card--pad form-card', novalidate: true, 'data-testid': 'kb-form' },
      h('h2', { class: 'card-title', text: isNew ? 'Add an entry' : 'Edit entry' }),
      h('div', { class: 'form-grid' },
        field('Question', question, 'How a visitor would usually ask it.'),
        field('Entry ID', id, isNew ? 'Letters, digits, - _ . — made from the question; you may change it.' : 'An existing entry keeps its ID.'),
        field('Other ways to ask (one per line)', alternatives),
        checkField('Hand over to a human after this answer', handover, 'The conversation goes to your team (reason: intent).')),
      field('Answer', answer),
      buttons.length ? h('p', { class: 'field-help', text: 'This entry has ' + buttons.length + (buttons.length === 1 ? ' button' : ' buttons') + ' (' + buttons.map((b) => b.label).join(', ') + '); they are kept.' }) : null,
      err,
      h('div', { class: 'form-actions' }, h('button', { class: 'btn btn-ghost', type: 'button', text: 'Cancel', onclick: onCancel }), submit));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      err.hidden = true;
      const problem = !question.value.trim() ? [question, 'Write the question.']
        : !answer.value.trim() ? [answer, 'Write the answer.']
          : !ENTRY_ID.test(id.value) ? [id, 'The ID takes 1 to 100 letters, digits, "-", "_" or "."']
            : isNew && taken.has(id.value) ? [id, 'An entry with this ID exists already: edit that one, or choose another ID.'] : null;
      if (problem) {
        showError(err, problem[1]);
        problem[0].focus();
        return;
      }
      submit.disabled = true;
      try {
        const res = await api('PUT', '/api/v1/bots/' + enc(botId) + '/knowledge/' + enc(id.value), {
          question: question.value.trim(),
          answer: answer.value.trim(),
          alternatives: lineList(alternatives.value),
          buttons,
          handover: handover.checked,
        });
        toast(isNew ? 'Entry added.' : 'Entry saved.', 'success');
        onDone((res && res.entry) || { id: id.value });
      } catch (ex) {
        submit.disabled = false;
        showError(err, ex.message);
      }
    });
    return form;
  }

  /** A danger button that asks for a second click within 4 seconds before it runs `run`. */
  /**
   * A button that asks for a second click before it runs. With `iconName`
   * it shows only that icon (its label for screen readers) and a short
   * "<label>?" once armed, for tight table rows.
   */
  function confirmButton(label, run, testid, iconName) {
    let armed = false;
    let timer = 0;
    const btn = h('button', { class: 'btn btn-danger-ghost btn-sm', type: 'button', 'data-testid': testid || null });
    const rest = () => (iconName ? append(clear(btn), [icon(iconName, 'icon--sm'), h('span', { class: 'sr-only', text: label })]) : (btn.textContent = label));
    rest();
    const disarm = () => {
      armed = false;
      rest();
      btn.classList.remove('is-armed');
    };
    btn.addEventListener('click', async () => {
      if (!armed) {
        armed = true;
        btn.textContent = iconName ? label + '?' : 'Click again to ' + label.toLowerCase();
        btn.classList.add('is-armed');
        timer = setTimeout(disarm, 4000);
        return;
      }
      clearTimeout(timer);
      btn.disabled = true;
      try {
        await run();
      } catch (e) {
        report(e);
      } finally {
        btn.disabled = false;
        disarm();
      }
    });
    return btn;
  }

  // --- channels -------------------------------------------------------------------------

  async function adminChannels(holder) {
    adminFetchPage(holder, {
      title: 'Channels',
      blurb: 'Where conversations come from.',
      path: '/api/v1/channels',
      key: 'channels',
      empty: () => emptyState('radio', 'No channels', 'Channels are configured in the Baton configuration file.'),
      render: (chans) => {
        const grid = h('div', { class: 'card-grid' });
        for (const ch of chans) {
          const info = channelInfo(ch.kind);
          grid.appendChild(h('div', { class: 'card channel-card' + (ch.enabled ? '' : ' is-off') },
            h('div', { class: 'channel-top' },
              h('span', { class: 'channel-icon channel-icon--' + (ch.kind || 'x') }, icon(info.icon)),
              h('div', { class: 'channel-name' }, h('h2', { class: 'card-title', text: info.label }), h('code', { class: 'mono card-sub', text: ch.kind })),
              h('span', { class: 'pill ' + (ch.enabled ? 'pill--active' : 'pill--resolved') }, h('span', { class: 'pill-dot' }), ch.enabled ? 'Enabled' : 'Disabled')),
            h('p', { class: 'channel-detail', text: ch.detail || (ch.enabled ? 'Receiving conversations.' : 'Not configured.') })));
        }
        return grid;
      },
    });
  }

  // --- webhooks ---------------------------------------------------------------------------

  async function adminWebhooks(holder) {
    adminListPage(holder, {
      title: 'Webhooks',
      blurb: 'Baton POSTs signed JSON to these URLs when conversations change.',
      addLabel: 'Add webhook',
      path: '/api/v1/webhooks',
      form: webhookForm,
      render: (res, load) => {
        const hooks = (res && res.webhooks) || [];
        if (!hooks.length) {
          return emptyState('webhook', 'No webhooks yet', 'Add one to send hand-over events to your CRM, Slack or data warehouse.');
        }
        const list = h('div', { class: 'stack' });
        for (const w of hooks) list.appendChild(webhookCard(w, load));
        return list;
      },
    });
  }

  function randomSecret() {
    const a = new Uint8Array(24);
    crypto.getRandomValues(a);
    return Array.from(a, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function webhookForm(onDone, onCancel) {
    const url = h('input', { class: 'input', type: 'url', required: true, placeholder: 'https://example.com/hooks/baton', autocomplete: 'off' });
    const secret = h('input', { class: 'input mono', type: 'text', required: true, minlength: '8', autocomplete: 'off', value: randomSecret() });
    const gen = h('button', { class: 'btn btn-secondary', type: 'button', text: 'Generate', onclick: () => { secret.value = randomSecret(); } });
    const all = h('input', { type: 'checkbox', id: 'wh-all' });
    const boxes = EVENT_TYPES.map((t) => h('input', { type: 'checkbox', value: t, checked: t === 'conversation.escalated', id: 'wh-' + t.replace(/\./g, '-') }));
    all.addEventListener('change', () => {
      for (const b of boxes) {
        b.checked = all.checked;
        b.disabled = all.checked;
      }
    });
    const err = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const submit = h('button', { class: 'btn btn-primary', type: 'submit', text: 'Create webhook' });
    const secretId = 'wh-secret';
    secret.id = secretId;
    const form = h('form', { class: 'card card--pad form-card', novalidate: true },
      h('h2', { class: 'card-title', text: 'Add a webhook' }),
      field('Endpoint URL', url),
      h('div', { class: 'field' },
        h('label', { for: secretId, text: 'Signing secret' }),
        h('div', { class: 'input-row' }, secret, gen),
        h('p', { class: 'field-help', text: 'Used to sign each delivery (8–256 characters). Copy it now: it is not shown again.' })),
      h('fieldset', { class: 'fieldset' },
        h('legend', { text: 'Events' }),
        h('label', { class: 'check check--all', for: 'wh-all' }, all, h('span', { text: 'All events' }), h('code', { class: 'mono muted', text: '*' })),
        h('div', { class: 'check-grid' }, boxes.map((b) => h('label', { class: 'check', for: b.id }, b, h('code', { class: 'mono', text: b.value }))))),
      err,
      h('div', { class: 'form-actions' }, h('button', { class: 'btn btn-ghost', type: 'button', text: 'Cancel', onclick: onCancel }), submit));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      err.hidden = true;
      const events = all.checked ? ['*'] : boxes.filter((b) => b.checked).map((b) => b.value);
      if (!url.value.trim()) {
        err.textContent = 'Enter the URL to deliver to.';
        err.hidden = false;
        return;
      }
      if (!events.length) {
        err.textContent = 'Choose at least one event.';
        err.hidden = false;
        return;
      }
      submit.disabled = true;
      try {
        await api('POST', '/api/v1/webhooks', { url: url.value.trim(), events, secret: secret.value });
        toast('Webhook created.', 'success');
        onDone();
      } catch (ex) {
        submit.disabled = false;
        err.textContent = ex.message;
        err.hidden = false;
      }
    });
    return form;
  }

  function webhookCard(w, reload) {
    const deliveries = h('div', { class: 'deliveries', hidden: true });
    const toggle = h('button', { class: 'btn btn-secondary btn-sm', type: 'button', 'aria-expanded': 'false' }, icon('chevron', 'icon--sm chev'), h('span', { text: 'Deliveries' }));
    toggle.addEventListener('click', async () => {
      const open = deliveries.hidden;
      deliveries.hidden = !open;
      toggle.setAttribute('aria-expanded', String(open));
      if (open) loadDeliveries(w, deliveries);
    });
    const del = confirmButton('Delete', async () => {
      await api('DELETE', '/api/v1/webhooks/' + enc(w.id));
      toast('Webhook deleted.', 'success');
      reload();
    });
    const evs = (w.events || []);
    return h('div', { class: 'card webhook-card' },
      h('div', { class: 'webhook-top' },
        h('span', { class: 'channel-icon' }, icon('webhook')),
        h('div', { class: 'webhook-main' },
          h('div', { class: 'webhook-url', text: w.url }),
          h('div', { class: 'webhook-meta' },
            w.active === false ? h('span', { class: 'pill pill--resolved' }, h('span', { class: 'pill-dot' }), 'Paused') : h('span', { class: 'pill pill--active' }, h('span', { class: 'pill-dot' }), 'Active'),
            h('span', { class: 'cell-muted', text: 'Added ' + fullDate(w.created_at) }))),
        h('div', { class: 'webhook-actions' }, toggle, del)),
      h('div', { class: 'webhook-events' }, evs.map((e) => h('span', { class: 'chip chip--code', text: e === '*' ? 'All events' : e }))),
      deliveries);
  }

  async function loadDeliveries(w, box) {
    clear(box).appendChild(h('div', { class: 'loading-inline' }, h('span', { class: 'spinner spinner--sm', 'aria-hidden': 'true' }), 'Loading deliveries…'));
    try {
      const res = await api('GET', '/api/v1/webhooks/' + enc(w.id) + '/deliveries');
      const list = (res && res.deliveries) || [];
      clear(box);
      if (!list.length) {
        box.appendChild(h('p', { class: 'panel-empty', text: 'No deliveries yet. They appear here as events happen.' }));
        return;
      }
      const tbody = h('tbody');
      for (const d of list) {
        const code = d.last_status_code ?? d.last_status;
        const st = String(d.status || '');
        tbody.appendChild(h('tr', null,
          h('td', null, h('code', { class: 'mono', text: d.type || d.event_type || '' })),
          h('td', null, h('span', { class: 'pill pill--' + (st === 'delivered' || st === 'succeeded' || st === 'success' ? 'active' : st === 'pending' ? 'waiting' : st === 'failed' || st === 'dead' ? 'danger' : 'resolved') }, h('span', { class: 'pill-dot' }), words(st))),
          h('td', { class: 'num', text: String(d.attempts ?? '') }),
          h('td', { class: 'num', text: code === null || code === undefined ? '—' : String(code) }),
          h('td', { class: 'cell-muted cell-wrap', text: d.last_error || '' }),
          h('td', { class: 'cell-muted', text: fullDate(d.delivered_at || d.created_at) })));
      }
      box.appendChild(h('div', { class: 'table-scroll' }, h('table', { class: 'table table--compact' },
        h('thead', null, h('tr', null, ['Event', 'Status', 'Attempts', 'HTTP', 'Last error', 'When'].map((t) => h('th', { scope: 'col', text: t })))),
        tbody)));
    } catch (e) {
      clear(box).appendChild(h('p', { class: 'form-error', text: e.message }));
    }
  }

  // --- plugins ----------------------------------------------------------------------------

  const PLUGIN_STATES = {
    on: { label: 'On', pill: 'active' },
    off: { label: 'Off', pill: 'resolved' },
    switched_off: { label: 'Switched off', pill: 'waiting' },
    error: { label: 'Error', pill: 'danger' },
  };
  const PLUGIN_WORLDS = {
    trigger: { label: 'Trigger', icon: 'hand' },
    'power-up': { label: 'Power-up', icon: 'bot' },
    action: { label: 'Action', icon: 'tasks' },
  };
  const PLUGIN_POLL_MS = 5000;

  /** A mean call time in microseconds as short text: 850 µs, 6.5 ms, 120 ms, 2.3 s. */
  function callTime(us) {
    if (us === null || us === undefined || !Number.isFinite(Number(us))) return '—';
    const n = Number(us);
    if (n < 1000) return Math.round(n) + ' µs';
    if (n < 10000) return (n / 1000).toFixed(1) + ' ms';
    if (n < 1000000) return Math.round(n / 1000) + ' ms';
    return (n / 1000000).toFixed(1) + ' s';
  }

  /** Milliseconds since the epoch as an ISO string, for `agoLong` and `fullDate`. */
  function epochIso(ms) {
    const n = Number(ms);
    return ms !== null && ms !== undefined && Number.isFinite(n) ? new Date(n).toISOString() : '';
  }

  /**
   * The plugins folder, loaded or not: one card per plugin with its state,
   * counters and limits, and a switch. Polled every 5 s, since plugins
   * hot-reload from the folder; only the cards that changed are redrawn.
   */
  async function adminPlugins(holder) {
    const dirNote = h('span', { class: 'plugin-dir', hidden: true });
    const body = adminHead(holder, 'Plugins', [
      'WebAssembly components that add hand-over triggers, bot power-ups and post-hand-over actions. ',
      dirNote,
    ]);
    body.parentNode.setAttribute('data-testid', 'plugins-page');
    const warn = h('p', { class: 'form-error', role: 'status', hidden: true, 'data-testid': 'plugins-refresh-error' });
    const slot = h('div');
    append(body, [warn, slot]);
    slot.appendChild(loadingBlock('Loading plugins…'));

    // id → { node, key, busy, plugin }; what is shown, in the server's order.
    const rows = new Map();
    const problems = new Map(); // id → { text, announce }: the last switch error, shown in the card
    const openDetails = new Set(); // ids whose "Technical details" are open
    let listEl = null;
    let dir = null;
    let loaded = false;
    let inFlight = false;

    function setDir(d) {
      dir = d || null;
      clear(dirNote);
      dirNote.hidden = !dir;
      if (dir) append(dirNote, ['Loaded from ', h('code', { class: 'mono', text: dir }), '; changes in the folder show up here by themselves.']);
    }

    function empty() {
      const el = dir
        ? emptyState('plug', 'No plugins installed',
          'Put a plugin (a WebAssembly component with its manifest) in a folder of its own under ', h('code', { class: 'mono', text: dir }),
          ' and it will be listed here with its state. ', h('code', { class: 'mono', text: 'BATON_PLUGINS_DIR' }), ' names another plugins folder.')
        : emptyState('plug', 'No plugins installed',
          'Put a plugin (a WebAssembly component with its manifest) in the plugins folder — ',
          h('code', { class: 'mono', text: '<data dir>/plugins' }), ', or the folder named by ', h('code', { class: 'mono', text: 'BATON_PLUGINS_DIR' }),
          ' — and it will be listed here with its state.');
      el.setAttribute('data-testid', 'plugins-empty');
      return el;
    }

    function build(p) {
      const problem = problems.get(p.id) || null;
      const announce = !!(problem && problem.announce);
      if (announce) problem.announce = false; // announced once, not on each refresh
      return pluginCard(p, {
        problem: problem ? problem.text : '',
        announce,
        open: openDetails.has(p.id),
        onDetails: (open) => {
          if (open) openDetails.add(p.id);
          else openDetails.delete(p.id);
        },
        onSwitch: (on) => switchPlugin(p.id, on),
      });
    }

    /** Redraws one card, keeping the keyboard focus on the same control. */
    function redraw(r, p, focusKey) {
      const active = document.activeElement;
      const had = focusKey || (active && r.node.contains(active) ? (active.closest('[data-focus]') || {}).dataset?.focus : null);
      const next = build(p);
      r.node.replaceWith(next);
      r.node = next;
      r.key = JSON.stringify(p);
      r.plugin = p;
      if (had) {
        const el = next.querySelector('[data-focus="' + had + '"]');
        if (el) el.focus({ preventScroll: true });
      }
    }

    function draw(list) {
      if (!list.length) {
        rows.clear();
        listEl = null;
        if (!slot.querySelector('[data-testid="plugins-empty"]')) clear(slot).appendChild(empty());
        return;
      }
      if (!listEl || !listEl.isConnected) {
        rows.clear();
        listEl = h('div', { class: 'stack plugin-list' });
        clear(slot).appendChild(listEl);
      }
      const seen = new Set();
      let prev = null;
      for (const p of list) {
        seen.add(p.id);
        let r = rows.get(p.id);
        if (!r) {
          r = { node: build(p), key: JSON.stringify(p), busy: false, plugin: p };
          rows.set(p.id, r);
        } else if (!r.busy && r.key !== JSON.stringify(p)) {
          redraw(r, p);
        }
        const want = prev ? prev.nextSibling : listEl.firstChild;
        if (want !== r.node) listEl.insertBefore(r.node, want);
        prev = r.node;
      }
      for (const [id, r] of rows) {
        if (seen.has(id)) continue;
        r.node.remove();
        rows.delete(id);
        problems.delete(id);
      }
    }

    function tickTimes() {
      for (const t of slot.querySelectorAll('time[data-ago]')) t.textContent = agoLong(t.getAttribute('datetime'));
    }

    async function load() {
      if (inFlight) return;
      inFlight = true;
      try {
        const res = await api('GET', '/api/v1/plugins');
        if (stale(holder)) return;
        setDir(res && res.dir);
        warn.hidden = true;
        loaded = true;
        draw((res && res.plugins) || []);
        tickTimes();
      } catch (e) {
        if (stale(holder)) return;
        if (loaded) showError(warn, 'This list may be out of date (it refreshes every few seconds): ' + e.message);
        else clear(slot).appendChild(errorBlock(e, 'Plugins'));
      } finally {
        inFlight = false;
      }
    }

    async function switchPlugin(id, on) {
      const r = rows.get(id);
      if (!r || r.busy) return;
      r.busy = true;
      r.node.setAttribute('aria-busy', 'true');
      const toggle = r.node.querySelector('[data-testid="plugin-toggle"]');
      if (toggle) toggle.disabled = true;
      try {
        const p = await api('PATCH', '/api/v1/plugins/' + enc(id), { enabled: on });
        if (stale(holder)) return;
        problems.delete(id);
        redraw(r, p, 'toggle');
        toast(on ? 'Plugin ' + id + ' is on.' : 'Plugin ' + id + ' is off.', 'success');
      } catch (e) {
        if (stale(holder) || e.status === 401) return;
        problems.set(id, {
          text: (on ? 'Could not turn it on: ' : 'Could not turn it off: ') + (e.status === 404 ? 'Baton has no loaded plugin with this id any more (it may have been removed or failed to load).' : e.message),
          announce: true,
        });
        redraw(r, r.plugin, 'toggle');
        if (e.status === 404) load();
      } finally {
        r.busy = false;
        if (r.node) r.node.removeAttribute('aria-busy');
      }
    }

    await load();
    const timer = setInterval(() => {
      if (stale(holder)) {
        clearInterval(timer);
        return;
      }
      if (document.visibilityState === 'visible') load();
    }, PLUGIN_POLL_MS);
  }

  function pluginCard(p, o) {
    const st = PLUGIN_STATES[p.state] || { label: words(p.state), pill: 'resolved' };
    const world = PLUGIN_WORLDS[p.world] || null;
    const stats = p.stats || {};
    const uid = 'plugin-' + String(p.id).replace(/[^A-Za-z0-9_-]/g, '_');
    const nameId = uid + '-name';
    const noteId = uid + '-note';

    let toggle = null;
    if (p.state !== 'error') {
      const again = p.state === 'switched_off';
      const input = h('input', {
        type: 'checkbox', role: 'switch', id: uid + '-toggle', checked: p.state === 'on',
        'data-testid': 'plugin-toggle', 'data-focus': 'toggle',
        'aria-describedby': again ? noteId : null,
      });
      input.addEventListener('change', () => o.onSwitch(input.checked));
      toggle = h('label', { class: 'switch plugin-switch', for: input.id }, input,
        h('span', { class: 'switch-track', 'aria-hidden': 'true' }),
        h('span', { class: 'switch-label' }, again ? 'Turn on again' : 'Enabled', h('span', { class: 'sr-only', text: ' (' + p.id + ')' })));
    }

    const lastAt = epochIso(stats.last_error_at);
    const when = (iso) => h('time', { datetime: iso, title: fullDate(iso), 'data-ago': '', text: agoLong(iso) });
    // The automatic switch-off quotes the last error already: say it once.
    const merged = p.state === 'switched_off' && !!stats.last_error && String(stats.switched_off || '').includes(stats.last_error);
    let notice = null;
    if (p.state === 'error') {
      notice = h('div', { class: 'plugin-notice plugin-notice--danger' },
        icon('alert', 'icon--sm'),
        h('div', { class: 'plugin-notice-text' },
          h('p', { class: 'plugin-notice-title', text: 'Did not load' }),
          h('p', { class: 'plugin-error-text', 'data-testid': 'plugin-error', text: p.error || 'Unknown error.' }),
          h('p', { class: 'plugin-notice-help', text: 'Fix the plugin in its folder (' + p.folder + '): Baton loads it again by itself.' })));
    } else if (p.state === 'switched_off') {
      notice = h('div', { class: 'plugin-notice plugin-notice--warn', id: noteId },
        icon('alert', 'icon--sm'),
        h('div', { class: 'plugin-notice-text' },
          h('p', { class: 'plugin-notice-title' }, 'Baton switched it off', merged && lastAt ? [' · ', when(lastAt)] : null),
          h('p', { class: 'plugin-error-text', 'data-testid': 'plugin-switched-off', text: stats.switched_off || 'It failed too many times in a row.' }),
          h('p', { class: 'plugin-notice-help', text: 'Turn it on again to give it another chance: its failures in a row count from zero.' })));
    }

    const stat = (label, value, testid, cls) => h('div', { class: 'plugin-stat' + (cls ? ' ' + cls : '') },
      h('dt', { text: label }), h('dd', { 'data-testid': testid || null, text: value }));
    const failures = Number(stats.failures) || 0;
    const timeouts = Number(stats.timeouts) || 0;
    const counters = h('dl', { class: 'plugin-stats' },
      stat('Calls', String(Number(stats.calls) || 0), 'plugin-calls'),
      stat('Failures', String(failures), 'plugin-failures', failures ? 'is-bad' : ''),
      stat('Timeouts', String(timeouts), 'plugin-timeouts', timeouts ? 'is-bad' : ''),
      stat('Mean call', callTime(p.mean_call_micros), 'plugin-mean'));

    let lastError = null;
    if (stats.last_error && !merged) {
      lastError = h('div', { class: 'plugin-last-error', 'data-testid': 'plugin-last-error' },
        h('p', { class: 'plugin-label' }, 'Last error',
          lastAt ? [' · ', when(lastAt)] : null,
          stats.consecutive_failures > 1 ? ' · ' + stats.consecutive_failures + ' in a row' : null),
        h('p', { class: 'plugin-error-text', text: stats.last_error }));
    }

    const chips = (list, cls) => h('span', { class: 'chips' }, list.map((x) => h('span', { class: 'chip ' + (cls || 'chip--code'), title: x, text: x })));
    const fact = (label, value) => h('div', { class: 'plugin-fact' }, h('dt', { text: label }), h('dd', null, value));
    const caps = p.capabilities || [];
    const hosts = p.allowed_hosts || [];
    const lim = p.limits;
    const facts = h('dl', { class: 'plugin-facts' },
      fact('Capabilities', caps.length ? chips(caps) : h('span', { class: 'muted', text: 'None' })),
      hosts.length || caps.includes('http') ? fact('Allowed hosts', hosts.length ? chips(hosts) : h('span', { class: 'muted', text: 'None: it cannot reach the network' })) : null,
      lim ? fact('Limits', h('span', { class: 'plugin-limits' },
        h('span', { text: lim.deadline_ms + ' ms per call' }),
        h('span', { text: lim.memory_mb + ' MiB memory' }),
        h('span', { text: lim.fuel === null || lim.fuel === undefined ? 'no fuel limit' : Number(lim.fuel).toLocaleString() + ' fuel' }))) : null,
      p.world === 'power-up' && (p.phrases || []).length ? fact('Phrases', chips(p.phrases, 'chip--tag-phrase')) : null,
      p.tool ? fact('LLM tool', h('span', { class: 'plugin-tool' }, h('code', { class: 'mono', text: p.tool.name }), p.tool.description ? h('span', { class: 'muted', text: p.tool.description }) : null)) : null);

    const imports = p.imports || [];
    const details = h('details', { class: 'plugin-details', open: !!o.open },
      h('summary', { 'data-focus': 'details' }, 'Technical details'),
      h('dl', { class: 'plugin-facts' },
        fact('Folder', h('code', { class: 'mono', text: p.folder })),
        p.sha256 ? fact('SHA-256', h('code', { class: 'mono plugin-hash', text: p.sha256 })) : null,
        imports.length ? fact('Imports', chips(imports)) : null));
    details.addEventListener('toggle', () => o.onDetails(details.open));

    return h('article', {
      class: 'card plugin-card plugin-card--' + String(p.state || 'x').replace(/[^a-z_]/g, ''),
      'data-testid': 'plugin-row', 'data-plugin-id': p.id, 'data-state': p.state, 'aria-labelledby': nameId,
    },
      h('div', { class: 'plugin-head' },
        h('span', { class: 'channel-icon plugin-icon' }, icon(world ? world.icon : 'plug')),
        h('div', { class: 'plugin-titles' },
          h('h2', { class: 'plugin-name', id: nameId, text: p.id }),
          h('p', { class: 'plugin-meta' },
            world ? h('span', { class: 'chip chip--reason chip--indigo', text: world.label }) : null,
            p.version ? h('code', { class: 'mono', text: 'v' + p.version }) : null)),
        h('div', { class: 'plugin-side' },
          h('span', { class: 'pill pill--' + st.pill, 'data-testid': 'plugin-state', 'data-state': p.state },
            h('span', { class: 'pill-dot', 'aria-hidden': 'true' }), st.label),
          toggle)),
      p.description ? h('p', { class: 'plugin-desc', text: p.description }) : null,
      o.problem ? h('p', { class: 'form-error', role: o.announce ? 'alert' : null, 'data-testid': 'plugin-toggle-error', text: o.problem }) : null,
      notice,
      counters,
      lastError,
      facts,
      details);
  }

  // ---------------------------------------------------------------------------
  // Reports
  // ---------------------------------------------------------------------------

  function isoDate(d) {
    const p = (n) => String(n).padStart(2, '0');
    return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate());
  }

  const reportRange = { from: null, to: null };

  function renderReports() {
    const today = new Date();
    const monthAgo = new Date();
    monthAgo.setDate(today.getDate() - 29);
    if (!reportRange.from) reportRange.from = isoDate(monthAgo);
    if (!reportRange.to) reportRange.to = isoDate(today);
    const from = h('input', { class: 'input input--sm', type: 'date', id: 'rep-from', value: reportRange.from, max: isoDate(today) });
    const to = h('input', { class: 'input input--sm', type: 'date', id: 'rep-to', value: reportRange.to, max: isoDate(today) });
    const csv = h('a', { class: 'btn btn-secondary', href: '#', download: 'handovers.csv' }, icon('download'), 'Download CSV');
    const presets = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Quick ranges' }, [[7, '7 days'], [30, '30 days'], [90, '90 days']].map(([n, label]) => h('button', {
      class: 'segmented-btn', type: 'button', text: label, 'data-days': String(n),
      onclick: () => {
        const f = new Date();
        f.setDate(f.getDate() - (n - 1));
        from.value = isoDate(f);
        to.value = isoDate(new Date());
        changed();
      },
    })));
    function markPreset() {
      for (const b of presets.querySelectorAll('[data-days]')) {
        const f = new Date();
        f.setDate(f.getDate() - (Number(b.getAttribute('data-days')) - 1));
        b.setAttribute('aria-pressed', String(from.value === isoDate(f) && to.value === isoDate(new Date())));
      }
    }
    const tools = h('div', { class: 'range' },
      presets,
      h('label', { class: 'range-field', for: 'rep-from' }, h('span', { text: 'From' }), from),
      h('label', { class: 'range-field', for: 'rep-to' }, h('span', { text: 'To' }), to),
      csv);
    const { body } = pageShell('Reports', 'Hand-overs from the bot to your team, and how fast they were picked up.', tools);
    body.classList.add('page-body--wide');
    const content = h('div');
    body.appendChild(content);

    function params() {
      const q = [];
      if (from.value) q.push('from=' + enc(from.value));
      if (to.value) {
        // `to` is exclusive on the server: include the whole chosen day.
        const d = new Date(to.value + 'T00:00:00Z');
        d.setUTCDate(d.getUTCDate() + 1);
        q.push('to=' + enc(d.toISOString().slice(0, 10)));
      }
      return q.join('&');
    }
    function changed() {
      if (from.value && to.value && from.value > to.value) {
        toast('The start date must be before the end date.');
        return;
      }
      reportRange.from = from.value;
      reportRange.to = to.value;
      markPreset();
      load();
    }
    markPreset();
    from.addEventListener('change', changed);
    to.addEventListener('change', changed);

    let gen = 0;
    async function load() {
      const my = ++gen;
      const q = params();
      csv.setAttribute('href', '/api/v1/reports/handovers.csv' + (q ? '?' + q : ''));
      csv.setAttribute('download', 'baton-handovers-' + from.value + '-to-' + to.value + '.csv');
      clear(content).appendChild(loadingBlock('Crunching numbers…'));
      try {
        const [r, depts] = await Promise.all([
          api('GET', '/api/v1/reports/handovers' + (q ? '?' + q : '')),
          loadDepartments().catch(() => []),
        ]);
        if (my !== gen || !content.isConnected) return;
        clear(content).appendChild(reportBody(r || {}, new Map(depts.map((d) => [d.id, d.name]))));
      } catch (e) {
        if (my !== gen || !content.isConnected) return;
        clear(content).appendChild(errorBlock(e, 'Reports'));
      }
    }
    load();
  }

  function statCard(label, value, sub, tone, testid) {
    return h('div', { class: 'card stat' + (tone ? ' stat--' + tone : ''), 'data-testid': testid || null },
      h('div', { class: 'stat-label', text: label }),
      h('div', { class: 'stat-value', text: value }),
      sub ? h('div', { class: 'stat-sub', text: sub }) : null);
  }

  function chartCard(title, testid, sub) {
    return h('div', { class: 'card card--pad chart-card', 'data-testid': testid || null },
      h('h2', { class: 'card-title', text: title }),
      sub ? h('p', { class: 'card-sub chart-sub', text: sub }) : null);
  }

  function bars(title, data, labeler, tone, testid) {
    const entries = Object.entries(data || {}).sort((a, b) => b[1] - a[1]);
    const max = entries.reduce((m, [, v]) => Math.max(m, Number(v) || 0), 0);
    const total = entries.reduce((s, [, v]) => s + (Number(v) || 0), 0);
    const card = chartCard(title, testid);
    if (!entries.length) {
      card.appendChild(h('p', { class: 'panel-empty', text: 'No hand-overs in this period.' }));
      return card;
    }
    const list = h('ul', { class: 'bars', role: 'list' });
    for (const [k, v] of entries) {
      const fill = h('span', { class: 'bar-fill bar-fill--' + tone });
      fill.style.width = (max ? Math.max(2, (Number(v) / max) * 100) : 0) + '%';
      const pct = total ? Math.round((Number(v) / total) * 100) : 0;
      list.appendChild(h('li', { class: 'bar-row' },
        h('div', { class: 'bar-head' }, h('span', { class: 'bar-label', text: labeler(k) }), h('span', { class: 'bar-value' }, h('strong', { text: String(v) }), h('span', { class: 'muted', text: ' · ' + pct + '%' }))),
        h('div', { class: 'bar-track', role: 'img', 'aria-label': labeler(k) + ': ' + v }, fill)));
    }
    card.appendChild(list);
    return card;
  }

  function percent(rate) {
    return (rate * 100).toLocaleString(undefined, { maximumFractionDigits: 1 }) + '%';
  }

  function reportBody(r, deptNames) {
    const ttc = r.time_to_claim || {};
    const claimed = ttc.count ?? null;
    const deptLabel = (k) => (k === 'none' ? 'No department' : deptNames.get(k) || k);
    const wrap = h('div', { class: 'report' });
    wrap.appendChild(h('div', { class: 'stats' },
      statCard('Hand-overs', String(r.total ?? 0), 'Escalations and takeovers', 'indigo'),
      statCard('Claimed', claimed === null ? '—' : String(claimed), claimed !== null && r.total ? Math.round((claimed / r.total) * 100) + '% of hand-overs' : 'Picked up by an agent', 'teal'),
      containmentCard(r.containment),
      statCard('Time to claim · median', duration(ttc.p50_seconds), ttc.p90_seconds == null ? 'p50' : '9 in 10 within ' + duration(ttc.p90_seconds), 'plain')));
    wrap.appendChild(overTimeChart(r.over_time || []));
    wrap.appendChild(h('div', { class: 'charts' },
      bars('Hand-overs by reason', r.by_reason, reasonLabel, 'indigo', 'report-by-reason'),
      bars('Hand-overs by channel', r.by_channel, (k) => channelInfo(k).label, 'teal', 'report-by-channel'),
      bars('Hand-overs by department', r.by_department, deptLabel, 'amber', 'report-by-department'),
      timingsCard(r)));
    wrap.appendChild(workloadCard(r.workload || []));
    return wrap;
  }

  function containmentCard(c) {
    const x = c || {};
    const has = typeof x.rate === 'number';
    const sub = x.conversations
      ? (x.contained ?? 0) + ' of ' + x.conversations + ' conversations, ' + (x.handed_over ?? 0) + ' handed over'
      : 'No conversations in this period';
    return statCard('Handled by the bot alone', has ? percent(x.rate) : '—', sub, 'amber', 'report-containment');
  }

  const TIMINGS = [
    ['time_to_claim', 'Time to claim'],
    ['time_to_first_response', 'First response'],
    ['time_to_resolution', 'Resolution'],
  ];

  function timingsCard(r) {
    const rows = TIMINGS.map(([key, label]) => {
      const t = r[key] || {};
      return h('tr', { 'data-metric': key },
        h('td', { class: 'cell-strong', text: label }),
        h('td', { class: 'num', text: duration(t.p50_seconds) }),
        h('td', { class: 'num', text: duration(t.p90_seconds) }),
        h('td', { class: 'num', text: duration(t.mean_seconds) }),
        h('td', { class: 'num cell-muted', text: String(t.count ?? 0) }));
    });
    const card = chartCard('Timings', 'report-timings', 'Measured from the hand-over.');
    card.appendChild(h('div', { class: 'table-scroll' }, h('table', { class: 'table table--compact table--all' },
      h('thead', null, h('tr', null, ['', 'Median', 'p90', 'Mean', 'Count'].map((t, i) => h('th', { scope: 'col', class: i ? 'num' : null }, t || h('span', { class: 'sr-only', text: 'Metric' }))))),
      h('tbody', null, rows))));
    return card;
  }

  function workloadCard(list) {
    const card = h('div', { class: 'card table-card', 'data-testid': 'report-workload' },
      h('div', { class: 'card-head' }, h('div', null,
        h('h2', { class: 'card-title', text: 'Workload' }),
        h('p', { class: 'card-sub', text: 'Conversations each agent claimed in this period, what they hold now, and how fast they first replied after claiming.' }))));
    if (!list.length) {
      card.appendChild(h('p', { class: 'panel-empty card--pad', text: 'No agents yet.' }));
      return card;
    }
    const rows = list.slice().sort((a, b) => (b.claimed - a.claimed) || String(a.agent.name).localeCompare(String(b.agent.name)));
    const tbody = h('tbody', null, rows.map((w) => {
      const fr = w.first_response || {};
      return h('tr', { 'data-testid': 'workload-row' },
        h('td', null, h('span', { class: 'cell-user' }, avatar(w.agent.name, w.agent.id, 'avatar--sm'), h('span', { class: 'cell-strong', text: w.agent.name }))),
        h('td', { class: 'num', text: String(w.claimed ?? 0) }),
        h('td', { class: 'num', text: String(w.active_now ?? 0) }),
        h('td', { class: 'num', text: duration(fr.p50_seconds) }),
        h('td', { class: 'num', text: duration(fr.p90_seconds) }));
    }));
    card.appendChild(h('div', { class: 'table-scroll' }, h('table', { class: 'table table--all' },
      h('thead', null, h('tr', null, ['Agent', 'Claimed', 'Active now', 'First reply · median', 'First reply · p90'].map((t, i) => h('th', { scope: 'col', class: i ? 'num' : null, text: t })))),
      tbody)));
    return card;
  }

  // --- hand-overs over time ---------------------------------------------------------

  const SEGMENT_TONES = 8;

  function shortDate(day) {
    const [y, m, d] = String(day).split('-').map(Number);
    return new Date(y, m - 1, d).toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
  }

  /** The server lists only days with hand-overs: add the quiet days of the chosen range so the bars line up in time. */
  function fillDays(days, from, to) {
    const sorted = days.slice().sort((a, b) => (a.date < b.date ? -1 : 1));
    if (!from || !to || from > to) return sorted;
    const known = new Map(sorted.map((d) => [d.date, d]));
    const out = [];
    const day = new Date(from + 'T00:00:00Z');
    for (let i = 0; i < 400; i++) {
      const key = day.toISOString().slice(0, 10);
      if (key > to) return out;
      out.push(known.get(key) || { date: key, total: 0, by_reason: {} });
      day.setUTCDate(day.getUTCDate() + 1);
    }
    return sorted; // a very long range: just the days with data
  }

  function overTimeChart(days) {
    const card = chartCard('Hand-overs over time', 'report-over-time', 'One bar per day, split by reason.');
    const series = fillDays(days, reportRange.from, reportRange.to);
    const totals = {};
    for (const d of series) for (const [k, n] of Object.entries(d.by_reason || {})) totals[k] = (totals[k] || 0) + n;
    const reasons = Object.keys(totals).sort((a, b) => totals[b] - totals[a]);
    if (!reasons.length) {
      card.appendChild(h('p', { class: 'panel-empty', text: 'No hand-overs in this period.' }));
      return card;
    }
    const tone = (reason) => 'seg-' + (reasons.indexOf(reason) % SEGMENT_TONES);
    const max = Math.max(1, ...series.map((d) => d.total || 0));
    const busiest = series.reduce((a, b) => ((b.total || 0) > (a.total || 0) ? b : a));
    const plot = h('div', {
      class: 'ot-plot' + (series.length > 45 ? ' ot-plot--dense' : ''), role: 'img',
      'aria-label': 'Hand-overs per day from ' + shortDate(series[0].date) + ' to ' + shortDate(series[series.length - 1].date)
        + '; the busiest day was ' + shortDate(busiest.date) + ' with ' + busiest.total + '. The table below has every day.',
    }, series.map((d) => dayColumn(d, reasons, max, tone)));
    append(card, [
      h('div', { class: 'ot-chart' }, h('span', { class: 'ot-max', 'aria-hidden': 'true', text: String(max) }), plot),
      h('div', { class: 'ot-axis', 'aria-hidden': 'true' }, h('span', { text: shortDate(series[0].date) }), h('span', { text: shortDate(series[series.length - 1].date) })),
      h('ul', { class: 'legend', role: 'list', 'aria-label': 'Reasons' }, reasons.map((k) => h('li', { class: 'legend-item' },
        h('span', { class: 'swatch ' + tone(k), 'aria-hidden': 'true' }), reasonLabel(k), h('span', { class: 'muted', text: String(totals[k]) })))),
      overTimeTable(series, reasons),
    ]);
    return card;
  }

  function dayColumn(d, reasons, max, tone) {
    const stack = h('span', { class: 'ot-stack' });
    stack.style.height = ((d.total || 0) / max) * 100 + '%';
    const parts = [];
    for (const reason of reasons) {
      const n = (d.by_reason || {})[reason] || 0;
      if (!n) continue;
      const seg = h('span', { class: 'ot-seg ' + tone(reason) });
      seg.style.flexGrow = String(n);
      stack.appendChild(seg);
      parts.push(reasonLabel(reason) + ' ' + n);
    }
    const tip = shortDate(d.date) + ': ' + (d.total || 0) + (parts.length ? ' (' + parts.join(', ') + ')' : '');
    return h('span', { class: 'ot-col', title: tip }, stack);
  }

  function overTimeTable(series, reasons) {
    const busy = series.filter((d) => d.total);
    return h('details', { class: 'ot-details' },
      h('summary', { text: 'Show as a table' }),
      h('div', { class: 'table-scroll' }, h('table', { class: 'table table--compact table--all' },
        h('thead', null, h('tr', null, ['Day', 'Total'].concat(reasons.map(reasonLabel)).map((t, i) => h('th', { scope: 'col', class: i ? 'num' : null, text: t })))),
        h('tbody', null, busy.map((d) => h('tr', null,
          h('td', { text: shortDate(d.date) }),
          h('td', { class: 'num', text: String(d.total) }),
          reasons.map((k) => h('td', { class: 'num', text: String((d.by_reason || {})[k] || 0) }))))))));
  }

  // ---------------------------------------------------------------------------

  boot();
})();
