/*
 * Baton web chat widget.
 *
 * Embed on any site with one line:
 *   <script src="https://baton.example/widget.js" data-bot="default" defer></script>
 *
 * Options (data-* attributes on the script tag):
 *   data-bot   the bot id (default "default"; in page mode also taken from a /chat/<bot> path)
 *   data-mode  "launcher" (floating button + panel, the default) or "page" (fills the viewport)
 *
 * Plain ES2020, no dependencies. Renders in the host page's light DOM under one
 * <div class="baton-widget">; every class is prefixed "baton-". User-supplied text is
 * only ever inserted with textContent / setAttribute.
 */
(() => {
  'use strict';

  // ---------------------------------------------------------------- bootstrap
  const GUARD = Symbol.for('baton.widget');
  if (window[GUARD]) return;
  window[GUARD] = true;

  const script =
    document.currentScript ||
    Array.from(document.getElementsByTagName('script'))
      .reverse()
      .find((s) => /\/widget\.js(?:[?#]|$)/.test(s.src)) ||
    null;

  const BASE = (() => {
    try {
      return new URL(script && script.src ? script.src : '/', location.href).origin;
    } catch (_) {
      return location.origin;
    }
  })();
  const WS_BASE = BASE.replace(/^http/i, 'ws'); // http→ws, https→wss
  const opts = (script && script.dataset) || {};
  const MODE = opts.mode === 'page' ? 'page' : 'launcher';
  const BOT = (() => {
    const fromAttr = (opts.bot || '').trim();
    if (fromAttr) return fromAttr;
    if (MODE === 'page') {
      const m = location.pathname.match(/\/chat\/([^/]+)\/?$/);
      if (m) {
        try {
          return decodeURIComponent(m[1]);
        } catch (_) {
          return m[1];
        }
      }
    }
    return 'default';
  })();
  const SESSION_KEY = `baton.${BOT}.session`;
  const CONTACT_KEY = `baton.${BOT}.contact`;
  const TYPING_SHOW_MS = 4000;
  const TYPING_SEND_MS = 3000;
  const PHONE_QUERY = '(max-width: 479.98px)';

  // ------------------------------------------------------------------ helpers
  const memoryStore = {};
  const storage = {
    get(key) {
      try {
        return window.localStorage.getItem(key);
      } catch (_) {
        return Object.prototype.hasOwnProperty.call(memoryStore, key) ? memoryStore[key] : null;
      }
    },
    set(key, value) {
      try {
        window.localStorage.setItem(key, value);
      } catch (_) {
        memoryStore[key] = value;
      }
    },
    del(key) {
      try {
        window.localStorage.removeItem(key);
      } catch (_) {
        delete memoryStore[key];
      }
    },
  };

  function uuid() {
    const c = window.crypto;
    if (c && typeof c.randomUUID === 'function') {
      try {
        return c.randomUUID();
      } catch (_) {
        /* not a secure context: fall through */
      }
    }
    const bytes = new Uint8Array(16);
    if (c && typeof c.getRandomValues === 'function') c.getRandomValues(bytes);
    else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  /** 0.5 s doubling to 10 s, with ±20 % jitter. */
  function backoff(attempt) {
    const base = Math.min(10000, 500 * 2 ** Math.min(attempt, 10));
    return Math.min(10000, Math.round(base * (0.8 + Math.random() * 0.4)));
  }

  // Sleeps that `online` / `visibilitychange` can cut short.
  const wakers = new Set();
  function nap(ms) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      wakers.add(done);
    });
  }
  function wakeAll() {
    Array.from(wakers).forEach((w) => w());
  }

  function initials(name) {
    const words = String(name || '')
      .trim()
      .split(/\s+/)
      .filter(Boolean);
    if (!words.length) return '?';
    const first = Array.from(words[0])[0] || '';
    const last = words.length > 1 ? Array.from(words[words.length - 1])[0] || '' : '';
    return (first + last).toUpperCase();
  }

  function hhmm(iso) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return '';
    return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
  }

  function safeHttpUrl(url) {
    try {
      const u = new URL(String(url), BASE);
      return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
    } catch (_) {
      return null;
    }
  }

  /** Creates an element. Text children become text nodes; never parses HTML. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    if (attrs) {
      for (const [key, value] of Object.entries(attrs)) {
        if (value == null || value === false) continue;
        if (key === 'class') el.className = value;
        else if (key === 'text') el.textContent = value;
        else if (key.startsWith('on') && typeof value === 'function') {
          el.addEventListener(key.slice(2), value);
        } else el.setAttribute(key, value === true ? '' : String(value));
      }
    }
    for (const child of children.flat()) {
      if (child == null || child === false) continue;
      el.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return el;
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';
  const ICONS = {
    chat: [['path', { d: 'M21 15a2 2 0 0 1-2 2H7l-4 4V5a2 2 0 0 1 2-2h14a2 2 0 0 1 2 2z' }]],
    chevronDown: [['path', { d: 'm6 9 6 6 6-6' }]],
    close: [['path', { d: 'M18 6 6 18M6 6l12 12' }]],
    send: [
      ['path', { d: 'M22 2 11 13' }],
      ['path', { d: 'm22 2-7 20-4-9-9-4z' }],
    ],
    bot: [
      ['path', { d: 'M12 8V4H8' }],
      ['rect', { x: '4', y: '8', width: '16', height: '12', rx: '2' }],
      ['path', { d: 'M2 14h2M20 14h2M15 13v2M9 13v2' }],
    ],
    user: [
      ['circle', { cx: '12', cy: '8', r: '4.5' }],
      ['path', { d: 'M20 21a8 8 0 0 0-16 0' }],
    ],
    external: [
      ['path', { d: 'M15 3h6v6M10 14 21 3' }],
      ['path', { d: 'M18 13v6a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V8a2 2 0 0 1 2-2h6' }],
    ],
    clock: [
      ['circle', { cx: '12', cy: '12', r: '9' }],
      ['path', { d: 'M12 7v5l3 2' }],
    ],
    check: [['path', { d: 'M20 6 9 17l-5-5' }]],
    arrowDown: [['path', { d: 'M12 5v14M19 12l-7 7-7-7' }]],
    mail: [
      ['rect', { x: '3', y: '5', width: '18', height: '14', rx: '2' }],
      ['path', { d: 'm3 7 9 6 9-6' }],
    ],
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
    svg.setAttribute('class', `baton-icon${cls ? ` ${cls}` : ''}`);
    for (const [tag, attrs] of ICONS[name] || []) {
      const child = document.createElementNS(SVG_NS, tag);
      for (const [k, v] of Object.entries(attrs)) child.setAttribute(k, v);
      svg.appendChild(child);
    }
    return svg;
  }

  let idCounter = 0;
  const uid = (name) => `baton-${name}-${Math.random().toString(36).slice(2, 8)}${++idCounter}`;

  // -------------------------------------------------------------------- state
  const S = {
    open: MODE === 'page',
    config: null,
    configError: null,
    session: null,
    sessionPromise: null,
    fatal: null,
    msgs: new Map(), // seq -> message
    lastSeq: 0,
    pending: new Map(), // client_id -> {client_id, text, row, done}
    status: 'bot',
    agent: null,
    queuePosition: null,
    synced: false,
    ws: null,
    wsTimer: null,
    wsAttempts: 0,
    wsFailures: 0,
    connected: null, // null = never tried, true/false afterwards
    lastTypingSent: 0,
    typingTimer: null,
    errorTimer: null,
    contactSent: false,
    humanBusy: false,
  };
  const rowMessage = new WeakMap();

  // ---------------------------------------------------------------------- DOM
  const panelId = uid('panel');
  const titleId = uid('title');

  const root = h('div', { class: 'baton-widget', 'data-mode': MODE, 'data-bot': BOT });

  let launcher = null;
  let unreadDot = null;
  if (MODE === 'launcher') {
    unreadDot = h('span', { class: 'baton-unread', hidden: true });
    launcher = h(
      'button',
      {
        type: 'button',
        class: 'baton-launcher',
        'data-testid': 'widget-launcher',
        'aria-label': 'Open chat',
        'aria-expanded': 'false',
        'aria-controls': panelId,
        'aria-haspopup': 'dialog',
      },
      icon('chat', 'baton-launcher-icon baton-launcher-icon-open'),
      icon('chevronDown', 'baton-launcher-icon baton-launcher-icon-close'),
      unreadDot
    );
  }

  const titleEl = h('div', { class: 'baton-title', id: titleId }, 'Chat');
  const subtitleText = h('span', {}, 'Typically replies instantly');
  const closeBtn =
    MODE === 'launcher'
      ? h(
          'button',
          { type: 'button', class: 'baton-close', 'aria-label': 'Close chat' },
          icon('close')
        )
      : null;
  const header = h(
    'div',
    { class: 'baton-header' },
    h('div', { class: 'baton-header-avatar', 'aria-hidden': 'true' }, icon('bot')),
    h(
      'div',
      { class: 'baton-header-text' },
      titleEl,
      h(
        'div',
        { class: 'baton-subtitle' },
        h('span', { class: 'baton-presence', 'aria-hidden': 'true' }),
        subtitleText
      )
    ),
    closeBtn
  );

  const statusArea = h('div', { class: 'baton-statusbar' });
  const reconnectBar = h(
    'div',
    { class: 'baton-reconnecting', role: 'status', hidden: true },
    h('span', { class: 'baton-spinner', 'aria-hidden': 'true' }),
    'Reconnecting…'
  );

  const log = h('div', {
    class: 'baton-log',
    role: 'log',
    'aria-live': 'polite',
    'aria-relevant': 'additions',
    'aria-label': 'Conversation',
  });
  const emptyState = h(
    'div',
    { class: 'baton-empty' },
    h('span', { class: 'baton-spinner baton-spinner-dark', 'aria-hidden': 'true' }),
    h('span', { class: 'baton-empty-text' }, 'Connecting…')
  );
  const typingText = h('span', { class: 'baton-typing-text' });
  const typingEl = h(
    'div',
    { class: 'baton-typing', hidden: true },
    h(
      'span',
      { class: 'baton-dots', 'aria-hidden': 'true' },
      h('span', {}),
      h('span', {}),
      h('span', {})
    ),
    typingText
  );
  const offlineSlot = h('div', { class: 'baton-offline-slot' });
  const inner = h('div', { class: 'baton-inner' }, emptyState, log, typingEl, offlineSlot);
  const body = h('div', { class: 'baton-body' }, inner);
  const jumpBtn = h(
    'button',
    { type: 'button', class: 'baton-jump', hidden: true },
    icon('arrowDown'),
    'New messages'
  );
  const main = h('div', { class: 'baton-main' }, reconnectBar, body, jumpBtn);

  const humanRow = h('div', { class: 'baton-human-row' });
  const humanLabel = h('span', {}, 'Talk to a human');
  const humanBtn = h(
    'button',
    { type: 'button', class: 'baton-request-human', 'data-testid': 'widget-request-human' },
    icon('user'),
    humanLabel
  );
  const errorEl = h('div', { class: 'baton-error', role: 'alert', hidden: true });
  const input = h('textarea', {
    class: 'baton-input',
    'data-testid': 'widget-input',
    'aria-label': 'Message',
    placeholder: 'Type your message…',
    rows: '1',
    autocomplete: 'off',
  });
  const sendBtn = h(
    'button',
    {
      type: 'submit',
      class: 'baton-send',
      'data-testid': 'widget-send',
      'aria-label': 'Send',
      'aria-disabled': 'true',
    },
    icon('send')
  );
  const composer = h('form', { class: 'baton-composer', novalidate: true }, input, sendBtn);
  const footer = h(
    'div',
    { class: 'baton-footer' },
    'Powered by ',
    h('strong', {}, 'Baton')
  );
  const bottom = h('div', { class: 'baton-bottom' }, humanRow, errorEl, composer, footer);

  const panel = h(
    'div',
    {
      class: 'baton-panel',
      id: panelId,
      role: 'dialog',
      'aria-label': 'Chat',
      hidden: MODE !== 'page',
    },
    header,
    statusArea,
    main,
    bottom
  );

  root.appendChild(panel);
  if (launcher) root.appendChild(launcher);

  // -------------------------------------------------------------- networking
  class NetError extends Error {}

  async function api(method, path, data, token) {
    const headers = { Accept: 'application/json' };
    if (data !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = `Bearer ${token}`;
    let res;
    try {
      res = await fetch(BASE + path, {
        method,
        headers,
        body: data === undefined ? undefined : JSON.stringify(data),
        credentials: 'omit',
        mode: 'cors',
        cache: 'no-store',
      });
    } catch (e) {
      throw new NetError(e && e.message ? e.message : 'network error');
    }
    let json = null;
    try {
      json = await res.json();
    } catch (_) {
      /* empty or non-JSON body */
    }
    return { status: res.status, ok: res.ok, data: json };
  }

  function errorText(r, fallback) {
    const msg = r && r.data && r.data.error && r.data.error.message;
    if (msg) return String(msg);
    if (r && r.status === 413) return 'That message is too long.';
    if (r && r.status === 429) return 'You are sending messages too quickly. Please wait a moment.';
    return fallback || 'Something went wrong. Please try again.';
  }

  // ------------------------------------------------------------------ config
  let configPromise = null;
  function loadConfig() {
    if (configPromise) return configPromise;
    configPromise = (async () => {
      for (let attempt = 0; ; attempt++) {
        try {
          const r = await api('GET', `/api/v1/widget/config?bot=${encodeURIComponent(BOT)}`);
          if (r.ok && r.data) {
            S.config = r.data;
            S.configError = null;
            applyConfig();
            return S.config;
          }
          if (r.status >= 400 && r.status < 500 && r.status !== 429) {
            S.configError = errorText(r, 'This chat is not available.');
            return null;
          }
        } catch (e) {
          if (!(e instanceof NetError)) throw e;
        }
        if (attempt >= 4) return null;
        await nap(backoff(attempt));
      }
    })().finally(() => {
      configPromise = null;
    });
    return configPromise;
  }

  function botName() {
    const b = S.config && S.config.bot;
    return (b && b.name) || 'Chat';
  }

  function handover() {
    return (S.config && S.config.handover) || null;
  }

  function applyConfig() {
    titleEl.textContent = botName();
    panel.setAttribute('aria-label', `Chat with ${S.config ? botName() : 'us'}`);
    renderStatus();
  }

  // ------------------------------------------------------------------ session
  function readSession() {
    const raw = storage.get(SESSION_KEY);
    if (!raw) return null;
    try {
      const s = JSON.parse(raw);
      if (s && typeof s.visitor_token === 'string' && s.visitor_token && s.conversation_id) {
        return { conversation_id: String(s.conversation_id), visitor_token: s.visitor_token };
      }
    } catch (_) {
      /* corrupt: ignore */
    }
    storage.del(SESSION_KEY);
    return null;
  }

  function saveSession(s) {
    storage.set(
      SESSION_KEY,
      JSON.stringify({ conversation_id: s.conversation_id, visitor_token: s.visitor_token })
    );
  }

  /** Resolves with the session, creating or validating it once. */
  function ensureSession() {
    if (S.session && !S.sessionPromise) return Promise.resolve(S.session);
    if (S.sessionPromise) return S.sessionPromise;
    S.sessionPromise = (async () => {
      const stored = readSession();
      if (stored) {
        S.session = stored;
        const result = await syncHistory();
        if (result !== 'invalid') {
          connectWs();
          return S.session;
        }
        dropSession();
      }
      await createSession();
      connectWs();
      return S.session;
    })();
    S.sessionPromise.then(
      () => {
        S.sessionPromise = null;
      },
      () => {
        S.sessionPromise = null;
      }
    );
    return S.sessionPromise;
  }

  async function createSession() {
    for (let attempt = 0; ; attempt++) {
      let r = null;
      try {
        r = await api('POST', '/api/v1/widget/sessions', { bot: BOT });
      } catch (e) {
        if (!(e instanceof NetError)) throw e;
      }
      if (r && r.ok && r.data && r.data.visitor_token) {
        S.session = {
          conversation_id: String(r.data.conversation_id),
          visitor_token: r.data.visitor_token,
        };
        saveSession(S.session);
        S.fatal = null;
        if (r.data.conversation) applyConversation(r.data.conversation, null);
        // The greeting arrives with the socket's replay; keep "Connecting…" until then.
        renderEmpty();
        return;
      }
      if (r && r.status >= 400 && r.status < 500 && r.status !== 429 && r.status !== 408) {
        S.fatal = r.status === 404 ? 'This chat is not available right now.' : errorText(r);
        renderEmpty();
        throw new Error(S.fatal);
      }
      S.connected = false;
      renderConnection();
      await nap(backoff(attempt));
    }
  }

  /** Forgets the current conversation entirely (the server no longer knows the token). */
  function dropSession() {
    storage.del(SESSION_KEY);
    S.session = null;
    closeWs();
    S.msgs.clear();
    S.lastSeq = 0;
    S.status = 'bot';
    S.agent = null;
    S.queuePosition = null;
    S.synced = false;
    Array.from(log.querySelectorAll('.baton-row:not(.baton-pending)')).forEach((r) => r.remove());
    S.contactSent = false;
    renderStatus();
    renderEmpty();
  }

  async function resetSession() {
    if (S.sessionPromise) return S.sessionPromise;
    dropSession();
    return ensureSession();
  }

  /**
   * Fetches messages after the last seen seq. Returns 'ok', 'invalid' (token unknown) or
   * 'offline' (could not reach the server).
   */
  async function syncHistory() {
    const session = S.session;
    if (!session) return 'offline';
    let r;
    try {
      r = await api(
        'GET',
        `/api/v1/widget/messages?after=${S.lastSeq}`,
        undefined,
        session.visitor_token
      );
    } catch (e) {
      if (e instanceof NetError) return 'offline';
      throw e;
    }
    if (session !== S.session) return 'offline';
    if (r.status === 401 || r.status === 404) return 'invalid';
    if (!r.ok || !r.data) return 'offline';
    const live = S.synced;
    (r.data.messages || []).forEach((m) => addMessage(m, live));
    if (r.data.conversation) applyConversation(r.data.conversation, r.data.queue_position);
    S.synced = true;
    renderEmpty();
    return 'ok';
  }

  // ---------------------------------------------------------------- websocket
  function closeWs() {
    clearTimeout(S.wsTimer);
    S.wsTimer = null;
    const ws = S.ws;
    S.ws = null;
    if (ws) {
      try {
        ws.close();
      } catch (_) {
        /* already closed */
      }
    }
  }

  function wsAlive() {
    return S.ws && (S.ws.readyState === WebSocket.OPEN || S.ws.readyState === WebSocket.CONNECTING);
  }

  function connectWs() {
    if (!S.session || wsAlive()) return;
    clearTimeout(S.wsTimer);
    S.wsTimer = null;
    const url =
      `${WS_BASE}/api/v1/widget/ws?token=${encodeURIComponent(S.session.visitor_token)}` +
      `&after=${S.lastSeq}`;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (_) {
      scheduleReconnect();
      return;
    }
    S.ws = ws;
    let opened = false;
    ws.addEventListener('open', () => {
      if (S.ws !== ws) return;
      opened = true;
      S.wsAttempts = 0;
      S.wsFailures = 0;
      S.connected = true;
      renderConnection();
      if (!S.config) loadConfig();
    });
    ws.addEventListener('message', (ev) => {
      if (S.ws !== ws) return;
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      onFrame(frame);
    });
    ws.addEventListener('close', () => {
      if (S.ws !== ws) return;
      S.ws = null;
      S.connected = false;
      renderConnection();
      if (!opened) S.wsFailures++;
      // A socket that never opens may mean the token is gone: ask over HTTP.
      if (S.wsFailures >= 2 && S.wsFailures % 2 === 0) {
        verifySession();
      }
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    if (!S.session || S.wsTimer) return;
    const delay = backoff(S.wsAttempts++);
    S.wsTimer = setTimeout(() => {
      S.wsTimer = null;
      connectWs();
    }, delay);
  }

  async function verifySession() {
    const result = await syncHistory();
    if (result === 'invalid') await resetSession().catch(() => {});
  }

  function reconnectNow() {
    wakeAll();
    if (!S.session) return;
    if (!wsAlive()) {
      clearTimeout(S.wsTimer);
      S.wsTimer = null;
      S.wsAttempts = 0;
      connectWs();
    }
    // Catch up over HTTP too (a sleeping phone may hold a dead socket).
    syncHistory().then((r) => {
      if (r === 'invalid') resetSession().catch(() => {});
    });
  }

  function onFrame(frame) {
    if (!frame || typeof frame !== 'object') return;
    switch (frame.type) {
      case 'message':
        addMessage(frame.message, S.synced);
        break;
      case 'status':
        setStatus(frame.status, frame.agent || null, frame.queue_position);
        if (!S.synced) {
          S.synced = true;
          renderEmpty();
        }
        break;
      case 'typing':
        if (frame.from && frame.from !== 'visitor') showTyping(String(frame.from));
        break;
      case 'draft':
        // A bot reply streamed as it is written; the stored message replaces it.
        if (typeof frame.text === 'string' && (S.status === 'bot' || S.status === 'resolved')) {
          showDraft(frame.text);
        }
        break;
      case 'error':
        showError(errorText({ data: frame }, 'Something went wrong.'));
        break;
      default:
        break;
    }
  }

  function sendTyping() {
    const now = Date.now();
    if (now - S.lastTypingSent < TYPING_SEND_MS) return;
    if (!S.ws || S.ws.readyState !== WebSocket.OPEN) return;
    S.lastTypingSent = now;
    try {
      S.ws.send(JSON.stringify({ type: 'typing' }));
    } catch (_) {
      /* ignore */
    }
  }

  // ------------------------------------------------------------------ status
  function applyConversation(conv, queuePosition) {
    if (!conv || !conv.status) return;
    const agent =
      conv.status === 'active' && conv.assignee && conv.assignee.name
        ? { name: conv.assignee.name }
        : null;
    setStatus(conv.status, agent, queuePosition);
  }

  function setStatus(status, agent, queuePosition) {
    if (!status) return;
    const prev = S.status;
    S.status = status;
    // A human took over: a half-written bot reply will not be sent.
    if (status !== 'bot' && typingEl.classList.contains('baton-draft')) hideTyping();
    S.agent = agent && agent.name ? { name: String(agent.name) } : null;
    if (typeof queuePosition === 'number') S.queuePosition = queuePosition;
    else if (queuePosition === null || status !== 'waiting') S.queuePosition = null;
    if (status === 'waiting' && prev !== 'waiting') {
      // `available` may have changed since the page loaded.
      loadConfig();
    }
    if (status !== 'bot') hideTyping();
    renderStatus();
  }

  let agentIndicator = null;
  let waitingBanner = null;
  let offlineCard = null;
  let availabilityTimer = null;

  function renderStatus() {
    const st = S.status;
    // Header subtitle.
    const subtitles = {
      bot: 'Typically replies instantly',
      waiting: 'Connecting you with the team',
      active: 'Live chat with our team',
      resolved: 'Typically replies instantly',
    };
    const ho = handover();
    const away = Boolean(ho && ho.available === false);
    // Nobody online: the conversation waits for the team's answer later, or
    // the visitor chose to leave a message instead of asking for a human.
    const offline = (st === 'waiting' && away) || (S.leaving && (st === 'bot' || st === 'resolved'));
    if (offline) subtitles.waiting = 'The team is away right now';
    if (away) {
      subtitles.bot = 'The team is away right now';
      subtitles.resolved = subtitles.bot;
    }
    subtitleText.textContent = subtitles[st] || subtitles.bot;
    root.setAttribute('data-status', st);
    root.toggleAttribute('data-team-away', away);

    // Agent indicator: only while a human is in the conversation.
    if (st === 'active' && S.agent) {
      const name = S.agent.name;
      if (!agentIndicator || agentIndicator.getAttribute('data-agent') !== name) {
        if (agentIndicator) agentIndicator.remove();
        agentIndicator = h(
          'div',
          {
            class: 'baton-agent-indicator',
            'data-testid': 'widget-agent-indicator',
            'data-agent': name,
          },
          // Initials come from CSS (attr()) so the indicator's text is just the sentence.
          h('span', {
            class: 'baton-avatar baton-avatar-agent',
            'aria-hidden': 'true',
            'data-initials': initials(name),
          }),
          h(
            'span',
            { class: 'baton-agent-text' },
            h('strong', {}, `${name} joined`),
            h('span', { class: 'baton-agent-sub' }, ' · You\u2019re chatting with a human')
          )
        );
        statusArea.appendChild(agentIndicator);
      }
    } else if (agentIndicator) {
      agentIndicator.remove();
      agentIndicator = null;
    }

    // Waiting banner.
    if (st === 'waiting') {
      const text = offline
        ? 'Nobody is available right now \u00b7 We\u2019ll answer your message later'
        : 'Waiting for a human' +
          (typeof S.queuePosition === 'number' && S.queuePosition > 0
            ? ` · You are #${S.queuePosition} in the queue`
            : '');
      if (!waitingBanner) {
        waitingBanner = h(
          'div',
          { class: 'baton-waiting', role: 'status' },
          h('span', { class: 'baton-pulse', 'aria-hidden': 'true' }),
          h('span', { class: 'baton-waiting-text' })
        );
        statusArea.appendChild(waitingBanner);
      }
      waitingBanner.querySelector('.baton-waiting-text').textContent = text;
    } else if (waitingBanner) {
      waitingBanner.remove();
      waitingBanner = null;
    }

    // Offline: leave-a-message form.
    if (offline) {
      if (!offlineCard) {
        offlineCard = buildOfflineCard();
        offlineSlot.appendChild(offlineCard);
        // Show the card from its top (it can be taller than the message area).
        const top =
          offlineCard.getBoundingClientRect().top - body.getBoundingClientRect().top + body.scrollTop - 12;
        body.scrollTop = Math.max(0, Math.min(top, body.scrollHeight - body.clientHeight));
      }
      offlineCard.querySelector('.baton-offline-text').textContent =
        (ho && ho.offline_message) ||
        'Our team is offline right now. Leave your email and we\u2019ll get back to you.';
      const sent = S.contactSent || storage.get(CONTACT_KEY) === (S.session && S.session.conversation_id);
      offlineCard.classList.toggle('baton-offline-sent', Boolean(sent));
      offlineCard.querySelector('.baton-contact').hidden = Boolean(sent);
      offlineCard.querySelector('.baton-thanks').hidden = !sent;
    } else if (offlineCard) {
      offlineCard.remove();
      offlineCard = null;
    }

    // While queued, notice when someone from the team comes online (or leaves).
    if (st === 'waiting' && !availabilityTimer) {
      availabilityTimer = setInterval(() => {
        if (!document.hidden) loadConfig();
      }, 30000);
    } else if (st !== 'waiting' && availabilityTimer) {
      clearInterval(availabilityTimer);
      availabilityTimer = null;
    }

    renderHuman();
  }

  // ---------------------------------------------------- "talk to a human"
  function botAnswers() {
    let firstVisitor = Infinity;
    for (const m of S.msgs.values()) {
      if (m.sender === 'visitor' && m.seq < firstVisitor) firstVisitor = m.seq;
    }
    if (firstVisitor === Infinity) return 0;
    let n = 0;
    for (const m of S.msgs.values()) if (m.sender === 'bot' && m.seq > firstVisitor) n++;
    return n;
  }

  function renderHuman() {
    const ho = handover();
    // After a hand back the conversation rests `resolved` with the bot in
    // charge again; asking for a human from there reopens it.
    const show =
      (S.status === 'bot' || S.status === 'resolved') &&
      Boolean(ho && ho.enabled) &&
      Boolean(S.session) &&
      botAnswers() >= (Number(ho.request_button_after) || 0);
    const leave = Boolean(ho && ho.available === false);
    humanLabel.textContent = leave ? 'Leave a message' : 'Talk to a human';
    humanBtn.setAttribute('data-mode', leave ? 'leave-message' : 'request-human');
    const shown = humanBtn.parentNode === humanRow;
    if (show && S.leaving) humanBtn.remove();
    else if (show && !shown) humanRow.appendChild(humanBtn);
    else if (!show && shown) humanBtn.remove();
    humanBtn.disabled = S.humanBusy;
    // A "talk to a human" chip duplicates the button while the button is there.
    if (show !== shown) refreshChips();
  }

  /// Seed 001: with nobody in the button's department, the button offers to
  /// leave a message, and the form (not a hand-over) comes first.
  function humanButtonClicked() {
    const ho = handover();
    if (ho && ho.available === false) {
      S.leaving = true;
      renderStatus();
      renderHuman();
      return;
    }
    requestHuman();
  }

  async function requestHuman() {
    if (S.humanBusy) return;
    S.humanBusy = true;
    renderHuman();
    try {
      await postAction('request_human');
    } finally {
      S.humanBusy = false;
      renderHuman();
    }
  }

  async function postAction(action) {
    let session;
    try {
      session = await ensureSession();
    } catch (_) {
      return false;
    }
    for (let attempt = 0; attempt < 4; attempt++) {
      let r;
      try {
        r = await api('POST', '/api/v1/widget/actions', { action }, session.visitor_token);
      } catch (e) {
        if (!(e instanceof NetError)) throw e;
        await nap(backoff(attempt));
        continue;
      }
      if (r.ok) {
        hideError();
        if (r.data && r.data.conversation) applyConversation(r.data.conversation);
        return true;
      }
      if (r.status === 401 || r.status === 404) {
        await resetSession().catch(() => {});
        showError('Your conversation expired. Please try again.');
        return false;
      }
      if (r.status >= 500) {
        await nap(backoff(attempt));
        continue;
      }
      showError(errorText(r));
      return false;
    }
    showError('Could not reach the server. Check your connection and try again.');
    return false;
  }

  // ---------------------------------------------------------------- messages
  function rowKey(row) {
    return row && row.classList.contains('baton-row')
      ? `${row.getAttribute('data-sender')}|${row.getAttribute('data-author') || ''}`
      : null;
  }

  function regroup(row) {
    if (!row || !row.classList || !row.classList.contains('baton-row')) return;
    const key = rowKey(row);
    const prevKey = rowKey(row.previousElementSibling);
    const cont = key === prevKey && row.getAttribute('data-sender') !== 'system';
    row.classList.toggle('baton-row-cont', cont);
  }

  function buildRow(m) {
    const sender = ['visitor', 'bot', 'agent', 'system'].includes(m.sender) ? m.sender : 'bot';
    const text = typeof m.text === 'string' ? m.text : '';
    if (sender === 'system') {
      const row = h(
        'div',
        { class: 'baton-row baton-row-system', 'data-sender': 'system' },
        h('div', { class: 'baton-system', 'data-testid': 'widget-message', 'data-sender': 'system' }, text)
      );
      return row;
    }
    const author = (m.author && m.author.name) || (sender === 'bot' ? botName() : sender === 'agent' ? 'Agent' : '');
    const row = h('div', {
      class: `baton-row baton-row-${sender}`,
      'data-sender': sender,
      'data-author': sender === 'visitor' ? '' : author,
    });
    const col = h('div', { class: 'baton-col' });
    if (sender === 'visitor') {
      col.appendChild(h('span', { class: 'baton-sr' }, 'You: '));
    } else {
      row.appendChild(
        sender === 'agent'
          ? h('div', {
              class: 'baton-avatar baton-avatar-agent',
              'aria-hidden': 'true',
              'data-initials': initials(author),
            })
          : h('div', { class: 'baton-avatar baton-avatar-bot', 'aria-hidden': 'true' }, icon('bot'))
      );
      col.appendChild(h('div', { class: 'baton-name' }, author));
    }
    col.appendChild(
      h('div', { class: 'baton-bubble', 'data-testid': 'widget-message', 'data-sender': sender }, text)
    );
    col.appendChild(h('div', { class: 'baton-meta' }));
    row.appendChild(col);
    setMeta(row, m);
    return row;
  }

  function setMeta(row, m) {
    const meta = row.querySelector('.baton-meta');
    if (!meta) return;
    meta.textContent = '';
    if (m && m.created_at) {
      meta.appendChild(h('time', { datetime: m.created_at }, hhmm(m.created_at)));
    } else {
      meta.appendChild(document.createTextNode('Sending…'));
    }
  }

  /** Inserts a confirmed row in seq order, before any pending rows. */
  function placeRow(row, seq) {
    let anchor = log.lastElementChild;
    while (anchor) {
      const s = anchor.getAttribute('data-seq');
      if (s !== null && Number(s) < seq) break;
      anchor = anchor.previousElementSibling;
    }
    row.setAttribute('data-seq', String(seq));
    if (anchor) anchor.after(row);
    else log.prepend(row);
  }

  function isNearBottom() {
    return body.scrollHeight - body.scrollTop - body.clientHeight < 80;
  }

  function scrollToBottom() {
    body.scrollTop = body.scrollHeight;
    jumpBtn.hidden = true;
  }

  function addMessage(m, live) {
    if (!m || m.internal || typeof m.seq !== 'number') return;
    const pending = m.client_id ? S.pending.get(m.client_id) : null;
    if (S.msgs.has(m.seq)) {
      if (pending) finishPending(pending, true);
      return;
    }
    const nearBottom = isNearBottom();
    S.msgs.set(m.seq, m);
    if (m.seq > S.lastSeq) S.lastSeq = m.seq;

    let row;
    if (pending) {
      // The server's copy of a message we showed as pending: reuse its row.
      finishPending(pending, false);
      row = pending.row;
      row.remove();
      row.classList.remove('baton-pending');
      const bubble = row.querySelector('.baton-bubble');
      bubble.removeAttribute('data-pending');
      bubble.textContent = typeof m.text === 'string' ? m.text : '';
      setMeta(row, m);
    } else {
      row = buildRow(m);
    }
    rowMessage.set(row, m);
    placeRow(row, m.seq);
    regroup(row);
    regroup(row.nextElementSibling);

    if (m.sender !== 'visitor') {
      hideTyping();
      if (live && MODE === 'launcher' && !S.open) setUnread(true);
    }
    renderHuman();
    refreshChips();
    renderEmpty();
    if (nearBottom || m.sender === 'visitor' || !live) scrollToBottom();
    else if (live) jumpBtn.hidden = false;
  }

  function refreshChips() {
    log.querySelectorAll('.baton-chips').forEach((c) => c.remove());
    const last = log.lastElementChild;
    if (!last || last.getAttribute('data-sender') !== 'bot') return;
    const m = rowMessage.get(last);
    const actions = (m && Array.isArray(m.actions) && m.actions) || [];
    const chips = [];
    for (const a of actions) {
      if (!a || !a.label) continue;
      const label = String(a.label);
      if (a.kind === 'link') {
        const href = safeHttpUrl(a.url);
        if (!href) continue;
        chips.push(
          h(
            'a',
            {
              class: 'baton-chip baton-chip-link',
              href,
              target: '_blank',
              rel: 'noopener noreferrer',
            },
            label,
            icon('external')
          )
        );
      } else if (a.kind === 'request_human') {
        if (humanBtn.parentNode) continue;
        chips.push(
          h(
            'button',
            { type: 'button', class: 'baton-chip baton-chip-human', onclick: () => requestHuman() },
            icon('user'),
            label
          )
        );
      } else if (a.kind === 'reply' && a.id) {
        const btn = h('button', { type: 'button', class: 'baton-chip' }, label);
        btn.addEventListener('click', async () => {
          const group = btn.parentNode;
          const buttons = group ? Array.from(group.querySelectorAll('button')) : [btn];
          buttons.forEach((b) => {
            b.disabled = true;
          });
          btn.classList.add('baton-chip-chosen');
          const ok = await postAction(String(a.id));
          if (!ok) {
            buttons.forEach((b) => {
              b.disabled = false;
            });
            btn.classList.remove('baton-chip-chosen');
          }
        });
        chips.push(btn);
      }
    }
    if (!chips.length) return;
    const col = last.querySelector('.baton-col');
    if (col) col.appendChild(h('div', { class: 'baton-chips', role: 'group', 'aria-label': 'Suggested replies' }, chips));
  }

  function renderEmpty() {
    const hasRows = log.childElementCount > 0;
    const text = emptyState.querySelector('.baton-empty-text');
    if (S.fatal) {
      emptyState.hidden = false;
      emptyState.classList.add('baton-empty-error');
      text.textContent = S.fatal;
      return;
    }
    emptyState.classList.remove('baton-empty-error');
    text.textContent = 'Connecting…';
    emptyState.hidden = hasRows || (S.synced && Boolean(S.session)) || (!S.session && !S.sessionPromise && MODE === 'launcher' && !S.open);
  }

  // ---------------------------------------------------------------- sending
  function sendText(raw) {
    const text = String(raw || '').trim();
    if (!text) return false;
    const p = { client_id: uuid(), text, row: null, done: false };
    const row = h(
      'div',
      { class: 'baton-row baton-row-visitor baton-pending', 'data-sender': 'visitor', 'data-author': '' },
      h(
        'div',
        { class: 'baton-col' },
        h('span', { class: 'baton-sr' }, 'You: '),
        h(
          'div',
          {
            class: 'baton-bubble',
            'data-testid': 'widget-message',
            'data-sender': 'visitor',
            'data-pending': 'true',
          },
          text
        ),
        h('div', { class: 'baton-meta' }, 'Sending…')
      )
    );
    p.row = row;
    S.pending.set(p.client_id, p);
    log.appendChild(row);
    regroup(row);
    refreshChips();
    renderEmpty();
    scrollToBottom();
    deliver(p);
    return true;
  }

  function finishPending(p, removeRow) {
    p.done = true;
    S.pending.delete(p.client_id);
    if (removeRow && p.row) {
      const next = p.row.nextElementSibling;
      p.row.remove();
      regroup(next);
      refreshChips();
    }
  }

  async function deliver(p) {
    let resets = 0;
    for (let attempt = 0; !p.done; ) {
      let session;
      try {
        session = await ensureSession();
      } catch (_) {
        failPending(p, S.fatal || 'Could not start the chat.');
        return;
      }
      if (p.done) return;
      let r = null;
      try {
        r = await api(
          'POST',
          '/api/v1/widget/messages',
          { text: p.text, client_id: p.client_id },
          session.visitor_token
        );
      } catch (e) {
        if (!(e instanceof NetError)) throw e;
      }
      if (p.done) return;
      if (r && r.ok) {
        hideError();
        if (r.data && r.data.message) addMessage(Object.assign({ client_id: p.client_id }, r.data.message), true);
        if (!p.done) finishPending(p, true); // no message in the answer: the WS echo will bring it
        return;
      }
      if (r && (r.status === 401 || r.status === 404) && resets < 1) {
        resets++;
        await resetSession().catch(() => {});
        continue;
      }
      if (r && r.status >= 400 && r.status < 500 && r.status !== 408) {
        failPending(p, errorText(r));
        return;
      }
      // Network error or 5xx: same client_id again after a pause.
      await nap(backoff(attempt++));
    }
  }

  function failPending(p, message) {
    if (p.done) return;
    finishPending(p, true);
    if (!input.value.trim()) {
      input.value = p.text;
      autoGrow();
      updateSendState();
    }
    showError(message);
  }

  function showError(message) {
    errorEl.textContent = message;
    errorEl.hidden = false;
    clearTimeout(S.errorTimer);
    S.errorTimer = setTimeout(hideError, 8000);
  }

  function hideError() {
    clearTimeout(S.errorTimer);
    errorEl.hidden = true;
    errorEl.textContent = '';
  }

  // ------------------------------------------------------------------ typing
  function showTyping(from) {
    typingText.textContent = `${from} is typing…`;
    const near = isNearBottom();
    typingEl.hidden = false;
    if (near) scrollToBottom();
    clearTimeout(S.typingTimer);
    S.typingTimer = setTimeout(hideTyping, TYPING_SHOW_MS);
  }

  function showDraft(text) {
    typingText.textContent = text;
    typingEl.classList.add('baton-draft');
    const near = isNearBottom();
    typingEl.hidden = false;
    if (near) scrollToBottom();
    clearTimeout(S.typingTimer);
    S.typingTimer = setTimeout(hideTyping, 30000);
  }

  function hideTyping() {
    clearTimeout(S.typingTimer);
    typingEl.hidden = true;
    typingEl.classList.remove('baton-draft');
  }

  // ----------------------------------------------------- leave-a-message form
  function buildOfflineCard() {
    const emailId = uid('email');
    const nameId = uid('name');
    const textId = uid('text');
    const emailErrId = uid('email-error');
    const emailInput = h('input', {
      id: emailId,
      class: 'baton-field-input',
      type: 'email',
      name: 'email',
      required: true,
      autocomplete: 'email',
      inputmode: 'email',
      placeholder: 'you@example.com',
      'aria-describedby': emailErrId,
    });
    const nameInput = h('input', {
      id: nameId,
      class: 'baton-field-input',
      type: 'text',
      name: 'name',
      autocomplete: 'name',
      placeholder: 'Your name',
    });
    const textInput = h('textarea', {
      id: textId,
      class: 'baton-field-input baton-field-textarea',
      name: 'text',
      rows: '3',
      placeholder: 'A few words about your question',
    });
    const emailErr = h('div', { class: 'baton-field-error', id: emailErrId, hidden: true });
    const formErr = h('div', { class: 'baton-form-error', role: 'alert', hidden: true });
    const submit = h('button', { type: 'submit', class: 'baton-button' }, 'Send message');
    const form = h(
      'form',
      { class: 'baton-contact', novalidate: true },
      h(
        'div',
        { class: 'baton-field' },
        h('label', { for: emailId, class: 'baton-label' }, 'Email', h('span', { class: 'baton-required', 'aria-hidden': 'true' }, ' *')),
        emailInput,
        emailErr
      ),
      h(
        'div',
        { class: 'baton-field' },
        h('label', { for: nameId, class: 'baton-label' }, 'Name ', h('span', { class: 'baton-optional' }, '(optional)')),
        nameInput
      ),
      h(
        'div',
        { class: 'baton-field' },
        h('label', { for: textId, class: 'baton-label' }, 'How can we help?'),
        textInput
      ),
      formErr,
      submit
    );
    const thanksText = h('span', { class: 'baton-thanks-text' }, 'Thanks! We\u2019ll get back to you by email.');
    const thanks = h(
      'div',
      { class: 'baton-thanks', role: 'status', hidden: true },
      h('span', { class: 'baton-thanks-icon', 'aria-hidden': 'true' }, icon('check')),
      thanksText
    );
    const card = h(
      'div',
      { class: 'baton-offline' },
      h(
        'div',
        { class: 'baton-offline-head' },
        h('span', { class: 'baton-offline-icon', 'aria-hidden': 'true' }, icon('mail')),
        h('div', { class: 'baton-offline-title' }, 'Leave us a message')
      ),
      h('p', { class: 'baton-offline-text' }),
      form,
      thanks
    );

    const setEmailError = (msg) => {
      emailErr.textContent = msg || '';
      emailErr.hidden = !msg;
      if (msg) emailInput.setAttribute('aria-invalid', 'true');
      else emailInput.removeAttribute('aria-invalid');
    };
    emailInput.addEventListener('input', () => {
      if (emailInput.getAttribute('aria-invalid')) setEmailError('');
    });

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      formErr.hidden = true;
      const email = emailInput.value.trim();
      if (!email) {
        setEmailError('Please enter your email address.');
        emailInput.focus();
        return;
      }
      if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email)) {
        setEmailError('Please enter a valid email address.');
        emailInput.focus();
        return;
      }
      setEmailError('');
      const payload = { email };
      const name = nameInput.value.trim();
      const text = textInput.value.trim();
      if (name) payload.name = name;
      if (text) payload.text = text;
      submit.disabled = true;
      submit.textContent = 'Sending…';
      try {
        const session = await ensureSession();
        const r = await api('POST', '/api/v1/widget/contact', payload, session.visitor_token);
        if (r.ok) {
          S.contactSent = true;
          storage.set(CONTACT_KEY, session.conversation_id);
          thanksText.textContent = `Thanks! We\u2019ll get back to you at ${email}.`;
          if (r.data && r.data.conversation) applyConversation(r.data.conversation);
          renderStatus();
          return;
        }
        if (r.status === 422 && /email/i.test(errorText(r))) setEmailError(errorText(r));
        formErr.textContent = errorText(r);
        formErr.hidden = false;
      } catch (_) {
        formErr.textContent = 'Could not send your message. Check your connection and try again.';
        formErr.hidden = false;
      } finally {
        submit.disabled = false;
        submit.textContent = 'Send message';
      }
    });
    return card;
  }

  // ---------------------------------------------------------- open / close
  function setUnread(on) {
    if (!unreadDot) return;
    unreadDot.hidden = !on;
    root.toggleAttribute('data-unread', on);
  }

  function openPanel() {
    if (S.open) return;
    S.open = true;
    panel.hidden = false;
    root.setAttribute('data-open', '');
    if (launcher) {
      launcher.setAttribute('aria-expanded', 'true');
      launcher.setAttribute('aria-label', 'Close chat');
    }
    setUnread(false);
    renderEmpty();
    ensureSession().catch(() => renderEmpty());
    renderEmpty();
    scrollToBottom();
    autoGrow();
    try {
      input.focus({ preventScroll: true });
    } catch (_) {
      input.focus();
    }
  }

  function closePanel(returnFocus) {
    if (!S.open || MODE === 'page') return;
    S.open = false;
    panel.hidden = true;
    root.removeAttribute('data-open');
    if (launcher) {
      launcher.setAttribute('aria-expanded', 'false');
      launcher.setAttribute('aria-label', 'Open chat');
      if (returnFocus) launcher.focus();
    }
  }

  // ------------------------------------------------------------ composer
  const LINE_HEIGHT = 20;
  const MAX_LINES = 5;
  function autoGrow() {
    input.style.height = 'auto';
    const cs = window.getComputedStyle(input);
    const pad = (parseFloat(cs.paddingTop) || 0) + (parseFloat(cs.paddingBottom) || 0);
    const lh = parseFloat(cs.lineHeight) || LINE_HEIGHT;
    const max = lh * MAX_LINES + pad;
    const next = Math.min(input.scrollHeight, max);
    if (next > 0) input.style.height = `${next}px`;
    input.style.overflowY = input.scrollHeight > max ? 'auto' : 'hidden';
  }

  function updateSendState() {
    sendBtn.setAttribute('aria-disabled', input.value.trim() ? 'false' : 'true');
  }

  function submitComposer() {
    if (S.fatal) return;
    if (sendText(input.value)) {
      input.value = '';
      autoGrow();
      updateSendState();
      hideError();
    }
    input.focus();
  }

  composer.addEventListener('submit', (ev) => {
    ev.preventDefault();
    submitComposer();
  });
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && ev.keyCode !== 229) {
      ev.preventDefault();
      submitComposer();
    }
  });
  input.addEventListener('input', () => {
    autoGrow();
    updateSendState();
    if (input.value.trim()) sendTyping();
  });

  humanBtn.addEventListener('click', () => humanButtonClicked());
  jumpBtn.addEventListener('click', scrollToBottom);
  body.addEventListener(
    'scroll',
    () => {
      if (isNearBottom()) jumpBtn.hidden = true;
    },
    { passive: true }
  );

  if (launcher) {
    launcher.addEventListener('click', () => {
      if (S.open) closePanel(false);
      else openPanel();
    });
  }
  if (closeBtn) closeBtn.addEventListener('click', () => closePanel(true));
  root.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && S.open && MODE === 'launcher') {
      ev.stopPropagation();
      closePanel(true);
    }
  });

  window.addEventListener('online', reconnectNow);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') reconnectNow();
  });

  function renderConnection() {
    // Only a session that has connected (or tried to) can be "reconnecting".
    reconnectBar.hidden = S.connected !== false || !S.session;
    root.toggleAttribute('data-offline', S.connected === false);
  }

  // ------------------------------------------------------------- mounting
  function stylesheetReady() {
    const href = `${BASE}/assets/widget.css`;
    let link = Array.from(document.querySelectorAll('link[rel~="stylesheet"]')).find(
      (l) => l.href === href
    );
    if (link && link.sheet) return Promise.resolve();
    if (!link) {
      link = document.createElement('link');
      link.rel = 'stylesheet';
      link.href = href;
      (document.head || document.documentElement).appendChild(link);
    }
    return new Promise((resolve) => {
      const done = () => resolve();
      link.addEventListener('load', done, { once: true });
      link.addEventListener('error', done, { once: true });
      setTimeout(done, 4000);
    });
  }

  function mount() {
    root.hidden = true;
    document.body.appendChild(root);
    stylesheetReady().then(() => {
      root.hidden = false;
      autoGrow();
      if (MODE === 'page') scrollToBottom();
    });
    renderStatus();
    renderEmpty();
    loadConfig();
    if (MODE === 'page') {
      root.setAttribute('data-open', '');
      ensureSession().catch(() => renderEmpty());
      try {
        input.focus({ preventScroll: true });
      } catch (_) {
        /* ignore */
      }
    } else if (readSession()) {
      // A returning visitor: reconnect quietly so replies light up the launcher.
      ensureSession().catch(() => renderEmpty());
    }
    // Phones: keep the panel's layout in sync when rotating.
    if (window.matchMedia) {
      const mq = window.matchMedia(PHONE_QUERY);
      const onChange = () => root.toggleAttribute('data-phone', mq.matches);
      onChange();
      if (mq.addEventListener) mq.addEventListener('change', onChange);
    }
  }

  if (document.body) mount();
  else document.addEventListener('DOMContentLoaded', mount, { once: true });
})();
