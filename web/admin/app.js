// tokenwarden's "API access" page: a client of /oauth2/token and the /admin/v1 JSON API.
//
// No framework and no build step. Every value from the server is put into the page as text
// (textContent, input.value), never as HTML. The admin token lives only in sessionStorage: it is
// gone when the tab closes, never sent as a cookie and never put into the URL. The URL holds only
// the site being looked at (#site=KEY), so a reload stays on it.
'use strict';

(() => {
  const SESSION_KEY = 'tokenwarden.admin-session';
  const SITES_PER_PAGE = 100;
  const MAX_NON_PRIMARY = 9; // A site holds 10 tokens: its primary and nine others.
  const SEARCH_DELAY_MS = 250;
  const REQUEST_TIMEOUT_MS = 20000;

  const $ = (id) => document.getElementById(id);
  const dayFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });
  const clockFormat = new Intl.DateTimeFormat(undefined, { timeStyle: 'short' });

  // ---------------------------------------------------------------------------------------------
  // The admin token
  // ---------------------------------------------------------------------------------------------

  function loadSession() {
    try {
      const session = JSON.parse(sessionStorage.getItem(SESSION_KEY));
      if (session && typeof session.token === 'string' && typeof session.expiresAt === 'number') {
        return session;
      }
    } catch (_) {
      // Unreadable storage reads as signed out.
    }
    return null;
  }

  function saveSession(session) {
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  }

  function clearSession() {
    sessionStorage.removeItem(SESSION_KEY);
  }

  // ---------------------------------------------------------------------------------------------
  // Talking to the server
  // ---------------------------------------------------------------------------------------------

  class RequestFailed extends Error {
    constructor(status, body) {
      super(body && body.error_description ? body.error_description : `HTTP ${status}`);
      this.status = status; // 0: the server was not reached
      this.code = body && typeof body.error === 'string' ? body.error : null;
      this.field = body && typeof body.field === 'string' ? body.field : null;
      this.handled = false; // set once the page has reacted (a 401 sends it to sign-in)
    }
  }

  // Paths are relative to the page (/admin/), so the page also works behind a path prefix.
  async function request(method, path, { headers = {}, body } = {}) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    let response;
    try {
      response = await fetch(new URL(path, document.baseURI), {
        method,
        headers: { Accept: 'application/json', ...headers },
        body,
        credentials: 'omit',
        cache: 'no-store',
        referrerPolicy: 'no-referrer',
        signal: controller.signal,
      });
    } catch (_) {
      throw new RequestFailed(0, null);
    } finally {
      clearTimeout(timer);
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      // Not JSON: the status alone tells what happened.
    }
    if (!response.ok) {
      throw new RequestFailed(response.status, data);
    }
    return data;
  }

  // A call to the admin API with the admin token. A 401 means the token expired or was revoked
  // (a disabled admin): back to sign-in.
  async function api(method, path, json) {
    const session = loadSession();
    if (!session) {
      const error = new RequestFailed(401, null);
      sessionExpired();
      error.handled = true;
      throw error;
    }
    const headers = { Authorization: `Bearer ${session.token}` };
    let body;
    if (json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(json);
    }
    try {
      return await request(method, `v1/${path}`, { headers, body });
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        sessionExpired();
        error.handled = true;
      }
      throw error;
    }
  }

  // RFC 6749 2.3.1: client id and secret are form-encoded before they go into Basic credentials.
  function formEncode(text) {
    return encodeURIComponent(text).replace(/%20/g, '+');
  }

  const enc = encodeURIComponent;

  // What a failure means, in words a site manager understands.
  function describe(error) {
    switch (error.status) {
      case 0:
        return 'Could not reach tokenwarden. Check your network connection and try again.';
      case 404:
        return 'This site or token no longer exists, or it is no longer assigned to you.';
      case 409:
        if (error.code === 'token_limit_reached') {
          return 'This site already holds 10 tokens, the most it may hold. Regenerate one of its tokens instead.';
        }
        return sentence(error.message);
      case 413:
        return 'That is more text than tokenwarden accepts.';
      case 503:
        return 'tokenwarden cannot reach its database right now. Try again in a minute.';
      default:
        if (error.status >= 500) {
          return 'tokenwarden could not complete the request. Try again; if it keeps failing, tell your tokenwarden operator.';
        }
        return sentence(error.message);
    }
  }

  // A 422's description, with the API's field name in words: "expires_at must be in the future"
  // reads "The expiry must be in the future."
  function fieldMessage(error) {
    const words = {
      description: 'The description',
      expires_at: 'The expiry',
      scope: 'The scope',
      audience: 'The audience',
    };
    const text = String(error.message);
    const name = Object.keys(words).find((field) => text.startsWith(`${field} `));
    return sentence(name ? words[name] + text.slice(name.length) : text);
  }

  function sentence(text) {
    const trimmed = String(text || 'Something went wrong').trim();
    const capital = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
    return /[.!?]$/.test(capital) ? capital : `${capital}.`;
  }

  // ---------------------------------------------------------------------------------------------
  // Small DOM helpers
  // ---------------------------------------------------------------------------------------------

  // Builds an element; children are nodes or strings (inserted as text).
  function el(tag, attributes = {}, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'class') element.className = value;
      else element.setAttribute(name, value === true ? '' : String(value));
    }
    element.append(...children);
    return element;
  }

  function show(element, visible) {
    element.hidden = !visible;
  }

  // Page-level messages: success and failures outside dialogs. `kind`: info, success or error.
  function flash(text, kind = 'info') {
    const messages = $('messages');
    messages.replaceChildren();
    if (text) messages.append(el('p', { class: `notice ${kind}` }, text));
  }

  // Local date and time, on two lines in tables; the exact UTC instant as a tooltip.
  function timeElement(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return el('time', {}, iso);
    return el('time', { datetime: iso, title: iso },
      el('span', { class: 'date' }, dayFormat.format(date)), ' ',
      el('span', { class: 'clock' }, clockFormat.format(date)));
  }

  function setBusy(button, busy, busyText) {
    if (busy) {
      button.dataset.label = button.textContent;
      button.textContent = busyText;
      button.disabled = true;
    } else {
      if (button.dataset.label) button.textContent = button.dataset.label;
      button.disabled = false;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Dialogs: native <dialog> with showModal() (focus stays inside, Escape closes); focus goes back
  // to where it came from, or to what stands there now that the table was redrawn.
  // ---------------------------------------------------------------------------------------------

  function openDialog(dialog, { focus, returnFocus }) {
    dialog.returnFocus = returnFocus;
    dialog.showModal();
    if (focus) focus.focus();
  }

  function closeAllDialogs() {
    for (const dialog of document.querySelectorAll('dialog')) {
      dialog.returnFocus = null;
      if (dialog.open) dialog.close();
    }
  }

  for (const dialog of document.querySelectorAll('dialog')) {
    dialog.addEventListener('close', () => {
      const target = dialog.returnFocus && dialog.returnFocus();
      dialog.returnFocus = null;
      if (target) target.focus();
    });
    for (const button of dialog.querySelectorAll('[data-close]')) {
      button.addEventListener('click', () => dialog.close());
    }
  }

  // Where focus goes when the element that opened a dialog is gone.
  function fallbackFocus() {
    const create = $('create-token');
    if (!$('tokens-view').hidden) return create.hidden ? $('site-title') : create;
    return $('main');
  }

  function fieldError(prefix, field, text) {
    const input = $(`${prefix}-${field}`);
    const message = $(`${prefix}-${field}-error`);
    if (!input || !message) return false;
    message.textContent = text;
    show(message, Boolean(text));
    if (text) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
    return true;
  }

  function formError(id, text) {
    const box = $(id);
    box.textContent = text || '';
    show(box, Boolean(text));
  }

  // ---------------------------------------------------------------------------------------------
  // Views
  // ---------------------------------------------------------------------------------------------

  const VIEWS = ['loading-view', 'sign-in-view', 'sites-view', 'tokens-view'];

  function showView(id, title) {
    for (const view of VIEWS) show($(view), view === id);
    document.title = `${title} · tokenwarden`;
  }

  function siteKeyFromHash() {
    const match = /^#site=(.+)$/.exec(window.location.hash);
    if (!match) return null;
    try {
      return decodeURIComponent(match[1]);
    } catch (_) {
      return null;
    }
  }

  function route() {
    closeAllDialogs();
    const session = loadSession();
    if (!session) {
      showSignIn();
      return;
    }
    if (session.expiresAt <= Date.now()) {
      sessionExpired();
      return;
    }
    show($('account'), true);
    $('signed-in-as').textContent = `Signed in as ${session.clientId}`;
    const siteKey = siteKeyFromHash();
    if (siteKey) openSite(siteKey);
    else openSites();
  }

  // ---------------------------------------------------------------------------------------------
  // Sign in and out
  // ---------------------------------------------------------------------------------------------

  let state = { siteKey: null, site: null, tokens: [] };

  function showSignIn() {
    show($('account'), false);
    state = { siteKey: null, site: null, tokens: [] };
    showView('sign-in-view', 'Sign in');
    $('client-secret').value = '';
    $('client-id').focus();
  }

  function sessionExpired() {
    closeAllDialogs();
    clearSession();
    showSignIn();
    flash('Your session expired, please sign in again.', 'error');
  }

  $('sign-in-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const clientId = $('client-id').value.trim();
    const secret = $('client-secret').value.trim();
    formError('sign-in-error', '');
    if (!clientId || !secret) {
      formError('sign-in-error', 'Enter your client ID and client secret.');
      $(clientId ? 'client-secret' : 'client-id').focus();
      return;
    }
    const button = $('sign-in-button');
    setBusy(button, true, 'Signing in…');
    try {
      const answer = await request('POST', '../oauth2/token', {
        headers: {
          Authorization: `Basic ${btoa(`${formEncode(clientId)}:${formEncode(secret)}`)}`,
          'Content-Type': 'application/x-www-form-urlencoded',
        },
        body: 'grant_type=client_credentials&scope=admin',
      });
      const expiresIn = Number(answer.expires_in) || 3600;
      saveSession({ token: answer.access_token, clientId, expiresAt: Date.now() + expiresIn * 1000 });
      $('client-secret').value = '';
      flash('');
      route();
    } catch (error) {
      let text;
      if (error.status === 401) {
        text = 'That client ID and secret do not match an admin. Check them and try again.';
      } else if (error.code === 'invalid_scope') {
        text = 'These are not admin credentials. Use the admin client ID and secret, not a site’s.';
      } else {
        text = describe(error);
      }
      formError('sign-in-error', text);
      $('client-secret').focus();
    } finally {
      setBusy(button, false);
    }
  });

  // Sign out ends the admin token on the server first (DELETE /admin/v1/sessions/current), so a
  // copy of it elsewhere stops working too; then the page forgets it. Unreachable server: the
  // token is forgotten here all the same (after at most 5 s) and expires on its own.
  $('sign-out').addEventListener('click', async () => {
    const session = loadSession();
    if (session) {
      try {
        await fetch('/admin/v1/sessions/current', {
          method: 'DELETE',
          headers: { Authorization: `Bearer ${session.token}` },
          signal: AbortSignal.timeout(5000),
        });
      } catch (_) {
        // Nothing more to do: the token expires on its own.
      }
    }
    closeAllDialogs();
    clearSession();
    window.history.replaceState(null, '', window.location.pathname);
    showSignIn();
    flash('You have signed out.', 'success');
  });

  // ---------------------------------------------------------------------------------------------
  // Site picker: the server searches and pages, so it stays fast with many thousands of sites.
  // ---------------------------------------------------------------------------------------------

  let sitesRequest = 0;
  let searchTimer = null;

  function openSites() {
    state = { siteKey: null, site: null, tokens: [] };
    showView('sites-view', 'Sites');
    loadSites($('site-search').value.trim());
  }

  async function loadSites(query) {
    const sequence = ++sitesRequest;
    $('sites-count').textContent = 'Loading sites…';
    let answer;
    try {
      const search = query ? `&q=${enc(query)}` : '';
      answer = await api('GET', `sites?limit=${SITES_PER_PAGE}${search}`);
    } catch (error) {
      if (sequence !== sitesRequest || error.handled) return;
      $('sites-count').textContent = '';
      flash(describe(error), 'error');
      return;
    }
    if (sequence !== sitesRequest) return; // a newer search has started
    renderSites(answer, query);
  }

  function renderSites({ sites, total }, query) {
    const count = $('sites-count');
    if (total === 0) {
      count.textContent = query
        ? `No site matches “${query}”.`
        : 'You do not manage any site yet. Ask your tokenwarden operator to assign one to you.';
    } else if (sites.length < total) {
      count.textContent = `Showing ${sites.length.toLocaleString()} of ${total.toLocaleString()} sites. Search to narrow the list.`;
    } else {
      count.textContent = total === 1 ? '1 site' : `${total.toLocaleString()} sites`;
    }
    const items = sites.map((site) => {
      const tokens = site.token_count === 1 ? '1 token' : `${site.token_count} tokens`;
      const link = el(
        'a',
        { class: 'site-link', href: `#site=${enc(site.site_key)}`, 'data-site-key': site.site_key },
        el('span', { class: 'site-name' }, site.name),
        el('span', { class: 'site-meta' }, el('code', {}, site.site_key), ` · ${tokens}`),
      );
      if (!site.enabled) link.append(el('span', { class: 'badge off' }, 'Disabled'));
      return el('li', {}, link);
    });
    $('site-list').replaceChildren(...items);
  }

  $('site-search').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => loadSites($('site-search').value.trim()), SEARCH_DELAY_MS);
  });

  // ---------------------------------------------------------------------------------------------
  // A site's tokens
  // ---------------------------------------------------------------------------------------------

  let siteRequest = 0;

  async function openSite(siteKey) {
    const sequence = ++siteRequest;
    state = { siteKey, site: null, tokens: [] };
    showView('tokens-view', 'Tokens');
    $('site-title').textContent = 'Loading…';
    $('site-key').textContent = siteKey;
    show($('site-disabled'), false);
    show($('create-token'), false);
    show($('limit-reached'), false);
    $('token-count').textContent = '';
    $('tokens-body').replaceChildren();
    let site;
    let list;
    try {
      [site, list] = await Promise.all([
        api('GET', `sites/${enc(siteKey)}`),
        api('GET', `sites/${enc(siteKey)}/tokens`),
      ]);
    } catch (error) {
      if (sequence !== siteRequest || error.handled) return;
      if (error.status === 404) {
        // Back to the list without a hashchange (whose handler would clear the message).
        window.history.replaceState(null, '', window.location.pathname);
        openSites();
        flash('That site does not exist, or it is not assigned to you.', 'error');
      } else {
        $('site-title').textContent = 'This site could not be loaded';
        flash(describe(error), 'error');
      }
      return;
    }
    if (sequence !== siteRequest) return;
    state.site = site;
    $('site-title').textContent = site.name;
    show($('site-disabled'), !site.enabled);
    document.title = `${site.name} · API access · tokenwarden`;
    renderTokens(list.tokens);
    $('site-title').focus();
  }

  // Reloads the list from the server: its order (primary, active, inactive) is the API's.
  async function refreshTokens() {
    const siteKey = state.siteKey;
    try {
      const list = await api('GET', `sites/${enc(siteKey)}/tokens`);
      if (state.siteKey === siteKey) renderTokens(list.tokens);
    } catch (error) {
      if (!error.handled) flash(describe(error), 'error');
    }
  }

  // The server's word (its clock) first; the local check covers a page left open past the expiry.
  function isExpired(token) {
    return token.expired === true
      || (Boolean(token.expires_at) && Date.parse(token.expires_at) <= Date.now());
  }

  function renderTokens(tokens) {
    state.tokens = tokens;
    const others = tokens.filter((token) => token.kind !== 'primary').length;
    const hasPrimary = others < tokens.length;
    const total = tokens.length === 1 ? '1 token' : `${tokens.length} tokens`;
    $('token-count').textContent = hasPrimary
      ? `${total} of 10: the primary token and ${others} more.`
      : `${total}. The site’s integration has not asked for its primary token yet.`;
    const canCreate = others < MAX_NON_PRIMARY;
    show($('create-token'), canCreate);
    show($('limit-reached'), !canCreate);
    $('tokens-body').replaceChildren(...tokens.map(tokenRow));
  }

  function tokenRow(token) {
    const primary = token.kind === 'primary';
    let status = token.active ? 'Active' : 'Inactive';
    let statusClass = token.active ? 'on' : 'off';
    if (token.active && isExpired(token)) {
      status = 'Expired';
      statusClass = 'expired';
    }
    const described = el('div', {}, el('span', { class: 'description' }, token.description));
    if (primary) described.append(' ', el('span', { class: 'badge primary' }, 'Primary'));
    const description = el('td', { 'data-label': 'Description' }, described);
    const cells = [
      description,
      el('td', { 'data-label': 'Value' }, el('code', { class: 'masked' }, token.masked_value)),
      el('td', { 'data-label': 'Status' },
        el('span', { class: `badge ${statusClass}`, 'data-status': status.toLowerCase() }, status)),
      el('td', { 'data-label': 'Generated' }, timeElement(token.generated_at)),
      el('td', { 'data-label': 'Last used' }, token.last_used_at ? timeElement(token.last_used_at) : 'Never'),
      el('td', { 'data-label': 'Expires' }, token.expires_at ? timeElement(token.expires_at) : 'Never'),
      el('td', { 'data-label': 'Scope' }, token.scope ? el('code', {}, token.scope) : '—'),
      el('td', { 'data-label': 'Audience' }, audienceCell(token.audience)),
      el('td', { class: 'actions', 'data-label': 'Actions' }, ...(primary
        ? [el('span', { class: 'hint' }, 'Managed by the site’s integration')]
        : actionButtons(token))),
    ];
    return el('tr', { 'data-token-id': token.id, class: primary ? 'primary' : null }, ...cells);
  }

  // Who may check the token: any API (no audience), the client ids of its audience, or none once
  // the operator deleted every one of them.
  function audienceCell(audience) {
    if (!Array.isArray(audience)) return 'Any';
    if (audience.length === 0) return el('span', { class: 'hint' }, 'None: its APIs were deleted');
    const ids = audience.map((clientId) => el('code', {}, clientId));
    return el('span', { class: 'audience' }, ...ids.flatMap((code, i) => (i ? [' ', code] : [code])));
  }

  function actionButtons(token) {
    const button = (action, label) => el('button', {
      type: 'button',
      class: 'button small',
      'data-action': action,
      'data-token-id': token.id,
      'aria-label': `${label} “${token.description}”`,
    }, label);
    return [
      button('regenerate', 'Regenerate'),
      token.active ? button('invalidate', 'Invalidate') : button('validate', 'Validate'),
      button('history', 'History'),
    ];
  }

  function actionButton(tokenId, action) {
    return document.querySelector(`#tokens-body button[data-token-id="${tokenId}"][data-action="${action}"]`);
  }

  $('tokens-body').addEventListener('click', (event) => {
    const button = event.target.closest('button[data-action]');
    if (!button) return;
    const token = state.tokens.find((t) => String(t.id) === button.dataset.tokenId);
    if (!token) return;
    if (button.dataset.action === 'history') openHistory(token);
    else openAction(token, button.dataset.action);
  });

  $('back-to-sites').addEventListener('click', (event) => {
    event.preventDefault();
    window.location.hash = '';
  });

  // ---------------------------------------------------------------------------------------------
  // Create a token
  // ---------------------------------------------------------------------------------------------

  function resetCreateForm() {
    $('create-form').reset();
    formError('create-error', '');
    for (const field of ['description', 'expires', 'scope', 'audience']) fieldError('create', field, '');
  }

  $('create-token').addEventListener('click', () => {
    resetCreateForm();
    openDialog($('create-dialog'), { focus: $('create-description'), returnFocus: fallbackFocus });
  });

  // The API's field names, and the inputs that show their errors.
  const CREATE_FIELDS = {
    description: 'description',
    expires_at: 'expires',
    scope: 'scope',
    audience: 'audience',
  };

  // A datetime-local value (local time, no zone) as RFC 3339 in UTC, whole seconds.
  function localToUtc(value) {
    const date = new Date(value);
    if (Number.isNaN(date.getTime())) return null;
    return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
  }

  $('create-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    formError('create-error', '');
    for (const field of Object.values(CREATE_FIELDS)) fieldError('create', field, '');
    const description = $('create-description').value.trim();
    const expiresInput = $('create-expires');
    const scope = $('create-scope').value.trim().replace(/\s+/g, ' ');
    const audience = $('create-audience').value.split(/[\s,]+/).filter(Boolean);
    // Only what the browser cannot send is checked here; every rule is the server's.
    if (!description) {
      fieldError('create', 'description', 'Enter a description: who or what will use this token.');
      $('create-description').focus();
      return;
    }
    const body = { description };
    if (expiresInput.validity.badInput) {
      fieldError('create', 'expires', 'Enter a complete date and time, or leave the field empty.');
      expiresInput.focus();
      return;
    }
    if (expiresInput.value) body.expires_at = localToUtc(expiresInput.value);
    if (scope) body.scope = scope;
    if (audience.length) body.audience = audience;
    const button = $('create-submit');
    setBusy(button, true, 'Creating…');
    let created;
    try {
      created = await api('POST', `sites/${enc(state.siteKey)}/tokens`, body);
    } catch (error) {
      if (error.handled) return;
      showCreateFailure(error);
      return;
    } finally {
      setBusy(button, false);
    }
    $('create-dialog').returnFocus = null;
    $('create-dialog').close();
    await refreshTokens();
    showSecret(`Token “${created.description}” created`, created.value, fallbackFocus);
  });

  function showCreateFailure(error) {
    const input = CREATE_FIELDS[error.field];
    if (error.status === 422 && input && fieldError('create', input, fieldMessage(error))) {
      $(`create-${input}`).focus();
      return;
    }
    formError('create-error', describe(error));
    if (error.code === 'token_limit_reached') refreshTokens();
  }

  // ---------------------------------------------------------------------------------------------
  // Regenerate, invalidate, validate
  // ---------------------------------------------------------------------------------------------

  const ACTIONS = {
    regenerate: {
      button: 'Regenerate',
      busy: 'Regenerating…',
      explain: (token) => 'A new value replaces the current one. The current value stops working at once: '
        + 'whoever uses it is cut off until they get the new value.'
        + (token.active ? '' : ' The token stays inactive until you validate it.'),
      done: (token) => `Token “${token.description}” regenerated.`,
    },
    invalidate: {
      button: 'Invalidate',
      busy: 'Invalidating…',
      explain: () => 'The token stops working at once. It stays in the list, and you can validate it again later.',
      done: (token) => `Token “${token.description}” invalidated. It no longer works.`,
    },
    validate: {
      button: 'Validate',
      busy: 'Validating…',
      explain: (token) => (isExpired(token)
        ? 'The token is marked active again, but it has expired, so it stays refused.'
        : 'The token works again at once.'),
      done: (token) => `Token “${token.description}” validated. It works again.`,
    },
  };

  let pendingAction = null;

  function openAction(token, action) {
    const spec = ACTIONS[action];
    pendingAction = { token, action };
    $('action-form').reset();
    formError('action-error', '');
    fieldError('action', 'description', '');
    $('action-title').textContent = `${spec.button} “${token.description}”?`;
    $('action-explanation').textContent = spec.explain(token);
    $('action-submit').textContent = spec.button;
    $('action-submit').dataset.action = action;
    openDialog($('action-dialog'), {
      focus: $('action-description'),
      returnFocus: () => actionButton(token.id, action) || fallbackFocus(),
    });
  }

  $('action-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!pendingAction) return;
    const { token, action } = pendingAction;
    const spec = ACTIONS[action];
    formError('action-error', '');
    fieldError('action', 'description', '');
    const description = $('action-description').value.trim();
    const button = $('action-submit');
    setBusy(button, true, spec.busy);
    let answer;
    try {
      answer = await api(
        'POST',
        `sites/${enc(state.siteKey)}/tokens/${token.id}/${action}`,
        description ? { description } : undefined,
      );
    } catch (error) {
      if (error.handled) return;
      if (error.status === 422 && error.field === 'description') {
        fieldError('action', 'description', fieldMessage(error));
        $('action-description').focus();
      } else {
        formError('action-error', describe(error));
      }
      return;
    } finally {
      setBusy(button, false);
    }
    pendingAction = null;
    // After regenerate, focus goes to the token's Regenerate button; after (in)validate, to the
    // button that took the other one's place.
    const next = action === 'invalidate' ? 'validate' : action === 'validate' ? 'invalidate' : action;
    const returnFocus = () => actionButton(token.id, next) || fallbackFocus();
    $('action-dialog').returnFocus = null;
    $('action-dialog').close();
    await refreshTokens();
    if (action === 'regenerate') {
      showSecret(`New value for “${answer.description}”`, answer.value, returnFocus);
    } else {
      flash(spec.done(answer), 'success');
      const target = returnFocus();
      if (target) target.focus();
    }
  });

  // ---------------------------------------------------------------------------------------------
  // The one-time value
  // ---------------------------------------------------------------------------------------------

  function showSecret(title, value, returnFocus) {
    $('secret-title').textContent = title;
    $('secret-value').textContent = value;
    $('secret-copied').textContent = '';
    openDialog($('secret-dialog'), { focus: $('secret-copy'), returnFocus });
  }

  // The value leaves the page when the dialog closes.
  $('secret-dialog').addEventListener('close', () => {
    $('secret-value').textContent = '';
    window.getSelection().removeAllRanges();
  });

  $('secret-copy').addEventListener('click', async () => {
    const secret = $('secret-value');
    let copied = false;
    try {
      await navigator.clipboard.writeText(secret.textContent);
      copied = true;
    } catch (_) {
      // No clipboard API (a plain-HTTP page on another host): select the value and copy that.
      const range = document.createRange();
      range.selectNodeContents(secret);
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
      try {
        copied = document.execCommand('copy');
      } catch (__) {
        copied = false;
      }
    }
    $('secret-copied').textContent = copied
      ? 'Copied to the clipboard.'
      : 'Copying did not work here: the value is selected, copy it with your keyboard.';
  });

  // ---------------------------------------------------------------------------------------------
  // History
  // ---------------------------------------------------------------------------------------------

  const EVENTS = {
    created: () => 'Created',
    validated: () => 'Validated',
    invalidated: () => 'Invalidated',
    regenerated: () => 'Regenerated (new value)',
    description_changed: (detail) => `Description changed to “${detail || ''}”`,
  };

  async function openHistory(token) {
    $('history-title').textContent = `History of “${token.description}”`;
    formError('history-error', '');
    const body = $('history-body');
    body.replaceChildren(el('tr', {}, el('td', { colspan: 3 }, 'Loading…')));
    openDialog($('history-dialog'), {
      focus: $('history-dialog').querySelector('[data-close]'),
      returnFocus: () => actionButton(token.id, 'history') || fallbackFocus(),
    });
    let answer;
    try {
      answer = await api('GET', `sites/${enc(state.siteKey)}/tokens/${token.id}/history`);
    } catch (error) {
      if (error.handled) return;
      body.replaceChildren();
      formError('history-error', describe(error));
      return;
    }
    if (answer.events.length === 0) {
      body.replaceChildren(el('tr', {}, el('td', { colspan: 3 }, 'No events yet.')));
      return;
    }
    body.replaceChildren(...answer.events.map((entry) => {
      const by = entry.actor.kind === 'admin'
        ? [entry.actor.name, ' ', el('span', { class: 'tag' }, 'admin')]
        : ['The site’s integration ', el('span', { class: 'tag' }, 'site')];
      const words = (EVENTS[entry.event] || (() => entry.event))(entry.detail);
      return el('tr', { 'data-event': entry.event },
        el('td', { 'data-label': 'Time' }, timeElement(entry.occurred_at)),
        el('td', { 'data-label': 'By' }, ...by),
        el('td', { 'data-label': 'Event' }, words));
    }));
  }

  // ---------------------------------------------------------------------------------------------

  window.addEventListener('hashchange', () => {
    flash('');
    route();
  });
  route();
})();
