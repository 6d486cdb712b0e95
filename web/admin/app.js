// tokenwarden's "API access" page: a client of /oauth2/token and the /admin/v1 JSON API.
//
// No framework and no build step. Every value from the server is put into the page as text
// (textContent, input.value), never as HTML. The admin token lives only in sessionStorage: it is
// gone when the tab closes, never sent as a cookie and never put into the URL. The URL holds only
// what is being looked at (#site=KEY, #resource-servers, #admins), so a reload stays on it.
//
// Who is signed in (name, role, sites) comes from GET /admin/v1/sessions/current; the sections
// only platform admins may use (creating and changing sites, resource servers, admins) are shown
// to platform admins only, and the server refuses them to anyone else all the same.
'use strict';

(() => {
  const SESSION_KEY = 'tokenwarden.admin-session';
  const SITES_PER_PAGE = 100;
  // Beyond this many matches the server may estimate the total (`total_exact: false`).
  const EXACT_TOTAL_LIMIT = 10000;
  const MAX_NON_PRIMARY = 9; // A site holds 10 tokens: its primary and nine others.
  const SEARCH_DELAY_MS = 250;
  const REQUEST_TIMEOUT_MS = 20000;

  const $ = (id) => document.getElementById(id);
  const dayFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });
  const clockFormat = new Intl.DateTimeFormat(undefined, { timeStyle: 'short' });
  const momentFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  const ROLES = { 'platform-admin': 'Platform admin', 'site-manager': 'Site manager' };

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
      if (error.status === 401 || (error.status === 403 && error.code !== 'forbidden')) {
        // 403 insufficient_scope: a site token, not an admin token, was stored.
        sessionExpired();
        error.handled = true;
      } else if (error.status === 403) {
        roleChanged();
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

  const GONE = {
    token: 'This site or token no longer exists, or it is no longer assigned to you.',
    site: 'This site no longer exists, or it is no longer assigned to you.',
    resourceServer: 'This resource server no longer exists: someone deleted it meanwhile.',
    admin: 'This admin no longer exists.',
  };

  // The conflicts the API answers with 409, by code.
  const CONFLICTS = {
    token_limit_reached: 'This site already holds 10 tokens, the most it may hold. Retire a token it no longer needs, or regenerate an expired one with a new expiry.',
    cannot_change_own_access: 'You cannot disable yourself or give up being a platform admin. Ask another platform admin to do it.',
    last_platform_admin: 'This would leave no enabled platform admin. Enable another platform admin, or make another admin one, first.',
  };

  // What a failure means, in words a site manager understands. `gone`: what a 404 means here.
  function describe(error, gone = GONE.token) {
    switch (error.status) {
      case 0:
        return 'Could not reach tokenwarden. Check your network connection and try again.';
      case 404:
        return gone;
      case 409:
        return CONFLICTS[error.code] || sentence(error.message);
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
      name: 'The name',
      sites: 'The site list',
      role: 'The role',
      q: 'The search',
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

  // Local date and time on one line, for sentences; the exact UTC instant as a tooltip.
  function momentElement(iso) {
    const date = new Date(iso);
    return el('time', { datetime: iso, title: iso },
      Number.isNaN(date.getTime()) ? iso : momentFormat.format(date));
  }

  // Site keys and client ids as code, up to `shown` of them, then how many more.
  function keyList(keys, shown = 3) {
    const codes = keys.slice(0, shown).map((key) => el('code', {}, key));
    const list = el('span', { class: 'keys' }, ...codes.flatMap((code, i) => (i ? [' ', code] : [code])));
    if (keys.length > shown) list.append(` and ${keys.length - shown} more`);
    return list;
  }

  function plural(count, one, many) {
    return count === 1 ? `1 ${one}` : `${count.toLocaleString()} ${many}`;
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

  // Where focus goes when the element that opened a dialog is gone: the view's main button, or
  // its heading.
  function fallbackFocus() {
    const create = $('create-token');
    if (!$('tokens-view').hidden) return create.hidden ? $('site-title') : create;
    const view = VIEWS.map($).find((section) => !section.hidden);
    return (view && view.querySelector('h1')) || $('main');
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

  // Sends a dialog form's request: its button busy meanwhile; a refusal shown in the dialog, next
  // to the field the API names when that field is one of `fields` (API name: input name, the
  // input's id being `${prefix}-${input}`); on success the dialog closes. Gives `{ answer }`, or
  // null when refused.
  async function submitDialog(dialog, { button, busy, prefix, fields = {}, gone, send }) {
    formError(`${prefix}-error`, '');
    for (const input of Object.values(fields)) fieldError(prefix, input, '');
    setBusy(button, true, busy);
    let answer;
    try {
      answer = await send();
    } catch (error) {
      if (error.handled) return null;
      const input = fields[error.field];
      if (error.status === 422 && input && fieldError(prefix, input, fieldMessage(error))) {
        focusField(`${prefix}-${input}`);
      } else {
        formError(`${prefix}-error`, describe(error, gone));
      }
      return null;
    } finally {
      setBusy(button, false);
    }
    dialog.returnFocus = null;
    dialog.close();
    return { answer };
  }

  // Focuses an input, or the chosen (else the first) radio button of a fieldset.
  function focusField(id) {
    const field = $(id);
    const target = field.tagName === 'FIELDSET'
      ? field.querySelector('input:checked') || field.querySelector('input')
      : field;
    target.focus();
  }

  // Site keys or client ids typed into one field, separated by spaces or commas.
  function keysIn(input) {
    return input.value.split(/[\s,]+/).filter(Boolean);
  }

  // The button of a table row: `list` is the tbody's id, `key` the row's data-key.
  function rowButton(list, key, action) {
    return document.querySelector(`#${list} button[data-key="${CSS.escape(key)}"][data-action="${action}"]`);
  }

  // A button of a table row, labelled for screen readers with what it acts on.
  function rowActionButton(key, action, label, spoken) {
    return el('button', {
      type: 'button', class: 'button small', 'data-action': action, 'data-key': key, 'aria-label': spoken,
    }, label);
  }

  // ---------------------------------------------------------------------------------------------
  // Confirmation: one dialog for every action that needs a yes first
  // ---------------------------------------------------------------------------------------------

  let pendingConfirmation = null;

  // `spec`: title, explanation, button, busy, danger, gone, returnFocus; `send()` performs the
  // action, `done(answer)` updates the page once it succeeded.
  function confirmAction(spec) {
    pendingConfirmation = spec;
    $('confirm-title').textContent = spec.title;
    $('confirm-explanation').textContent = spec.explanation;
    const button = $('confirm-submit');
    button.textContent = spec.button;
    button.classList.toggle('danger', Boolean(spec.danger));
    button.classList.toggle('primary', !spec.danger);
    formError('confirm-error', '');
    // Focus starts on Cancel: Enter alone never disables or deletes anything.
    openDialog($('confirm-dialog'), { focus: $('confirm-cancel'), returnFocus: spec.returnFocus });
  }

  $('confirm-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const spec = pendingConfirmation;
    if (!spec) return;
    const outcome = await submitDialog($('confirm-dialog'), {
      button: $('confirm-submit'), busy: spec.busy, prefix: 'confirm', gone: spec.gone, send: spec.send,
    });
    if (!outcome) return;
    pendingConfirmation = null;
    await spec.done(outcome.answer);
  });

  // ---------------------------------------------------------------------------------------------
  // Views
  // ---------------------------------------------------------------------------------------------

  const VIEWS = [
    'loading-view', 'sign-in-view', 'sites-view', 'tokens-view', 'resource-servers-view', 'admins-view',
  ];
  // The section of the navigation each view belongs to.
  const SECTION_OF_VIEW = {
    'sites-view': 'sites',
    'tokens-view': 'sites',
    'resource-servers-view': 'resource-servers',
    'admins-view': 'admins',
  };

  function showView(id, title) {
    for (const view of VIEWS) show($(view), view === id);
    document.title = `${title} · tokenwarden`;
    for (const link of document.querySelectorAll('#sections a[data-section]')) {
      if (link.dataset.section === SECTION_OF_VIEW[id]) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
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

  // Views only platform admins have, by their address.
  const PLATFORM_VIEWS = {
    '#resource-servers': () => openResourceServers(),
    '#admins': () => openAdmins(),
  };

  async function route() {
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
    if (!me) {
      showView('loading-view', 'Loading');
      try {
        await whoAmI();
      } catch (error) {
        if (!error.handled) flash(describe(error), 'error');
        return;
      }
      if (!me) return; // signed out meanwhile
    }
    const siteKey = siteKeyFromHash();
    const platformView = PLATFORM_VIEWS[window.location.hash];
    if (siteKey) {
      openSite(siteKey);
    } else if (platformView && isPlatformAdmin()) {
      platformView();
    } else {
      if (platformView) window.history.replaceState(null, '', window.location.pathname);
      openSites();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Who is signed in
  // ---------------------------------------------------------------------------------------------

  // The session of the stored admin token (GET /admin/v1/sessions/current): client_id, name,
  // role, sites, expires_at. Null until loaded, and once signed out.
  let me = null;
  let mePromise = null;

  function whoAmI() {
    if (!mePromise) {
      const pending = api('GET', 'sessions/current').then((session) => {
        if (mePromise === pending) {
          me = session;
          renderAccount();
        }
        return session;
      }, (error) => {
        if (mePromise === pending) mePromise = null;
        throw error;
      });
      mePromise = pending;
    }
    return mePromise;
  }

  function forgetMe() {
    me = null;
    mePromise = null;
  }

  function isPlatformAdmin() {
    return Boolean(me) && me.role === 'platform-admin';
  }

  function renderAccount() {
    const who = $('signed-in-as');
    who.replaceChildren(
      'Signed in as ',
      el('strong', { id: 'account-name' }, me.name),
      ' ',
      el('span', { class: 'role', id: 'account-role' }, ROLES[me.role] || me.role),
    );
    who.title = me.client_id;
    show($('account'), true);
    show($('sections'), isPlatformAdmin());
  }

  // The server refused a platform admin's action as a site manager's: the role changed since the
  // page asked. Ask again, and go where the new role may be.
  async function roleChanged() {
    closeAllDialogs();
    forgetMe();
    window.history.replaceState(null, '', window.location.pathname);
    await route();
    flash('Only platform admins may do this, and you are no longer one.', 'error');
  }

  // ---------------------------------------------------------------------------------------------
  // Sign in and out
  // ---------------------------------------------------------------------------------------------

  let state = { siteKey: null, site: null, tokens: [] };

  function showSignIn() {
    forgetMe();
    show($('account'), false);
    show($('sections'), false);
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
      forgetMe();
      saveSession({ token: answer.access_token, expiresAt: Date.now() + expiresIn * 1000 });
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
  // Sites: the server searches and pages, so the list stays fast with any number of sites. A page
  // with more after it carries `next`, passed back as `cursor=`; past EXACT_TOTAL_LIMIT matches
  // `total` may be an estimate (`total_exact: false`).
  // ---------------------------------------------------------------------------------------------

  let sitesRequest = 0;
  let searchTimer = null;
  // What the list shows: the search it answers, the sites loaded so far, and where more begin.
  let siteList = { query: '', sites: [], total: 0, exact: true, next: null };

  function openSites() {
    state = { siteKey: null, site: null, tokens: [] };
    showView('sites-view', 'Sites');
    show($('create-site'), isPlatformAdmin());
    loadSites($('site-search').value.trim());
  }

  function sitesPath(query, cursor) {
    let path = `sites?limit=${SITES_PER_PAGE}`;
    if (query) path += `&q=${enc(query)}`;
    if (cursor) path += `&cursor=${enc(cursor)}`;
    return path;
  }

  // Loads the first page of sites matching `query`, or with `more` the page after those shown.
  async function loadSites(query, { more = false } = {}) {
    const sequence = ++sitesRequest;
    fieldError('site', 'search', '');
    const moreButton = $('more-sites');
    if (more) setBusy(moreButton, true, 'Loading…');
    else $('sites-count').textContent = 'Loading sites…';
    let answer;
    try {
      answer = await api('GET', sitesPath(query, more ? siteList.next : null));
    } catch (error) {
      if (sequence !== sitesRequest || error.handled) return;
      if (!more) {
        siteList = { query, sites: [], total: 0, exact: true, next: null };
        $('sites-count').textContent = '';
        $('site-list').replaceChildren();
        show(moreButton, false);
      }
      if (error.status === 422 && error.field === 'q') fieldError('site', 'search', fieldMessage(error));
      else flash(describe(error), 'error');
      return;
    } finally {
      if (more) setBusy(moreButton, false);
    }
    if (sequence !== sitesRequest) return; // a newer search has started
    const shownBefore = more ? siteList.sites.length : 0;
    siteList = {
      query,
      sites: more ? siteList.sites.concat(answer.sites) : answer.sites,
      total: answer.total,
      exact: answer.total_exact !== false,
      next: typeof answer.next === 'string' && answer.next ? answer.next : null,
    };
    renderSites();
    if (more) {
      const first = $('site-list').rows[shownBefore];
      if (first) first.querySelector('a').focus();
    }
  }

  function renderSites() {
    const { query, sites, total, exact, next } = siteList;
    const count = $('sites-count');
    if (sites.length === 0) {
      if (query) count.textContent = `No site matches “${query}”.`;
      else if (isPlatformAdmin()) count.textContent = 'There is no site yet. Create Site adds the first one.';
      else count.textContent = 'You do not manage any site yet. Ask your tokenwarden operator to assign one to you.';
    } else if (!exact || sites.length < total) {
      const all = exact ? total.toLocaleString() : `more than ${EXACT_TOTAL_LIMIT.toLocaleString()}`;
      count.textContent = `Showing ${sites.length.toLocaleString()} of ${all} sites. Search to narrow the list.`;
    } else {
      count.textContent = plural(total, 'site', 'sites');
    }
    $('site-list').replaceChildren(...sites.map(siteRow));
    show($('more-sites'), Boolean(next));
  }

  function siteRow(site) {
    const link = el('a', { class: 'site-link', href: `#site=${enc(site.site_key)}`, 'data-site-key': site.site_key },
      el('span', { class: 'site-name' }, site.name));
    const status = el('td', { 'data-label': 'Status' }, el('span', {
      class: `badge ${site.enabled ? 'on' : 'off'}`, 'data-status': site.enabled ? 'enabled' : 'disabled',
    }, site.enabled ? 'Enabled' : 'Disabled'));
    appendOverlap(status, 'auth key', site.previous_auth_key_valid_until);
    return el('tr', { 'data-key': site.site_key },
      el('td', { 'data-label': 'Name' }, link),
      el('td', { 'data-label': 'Site key' }, el('code', { class: 'key' }, site.site_key)),
      status,
      el('td', { 'data-label': 'Created' }, site.created_at ? timeElement(site.created_at) : '—'),
      el('td', { 'data-label': 'Tokens' }, String(site.token_count)),
      el('td', { class: 'actions', 'data-label': 'Actions' }, ...siteButtons(site)));
  }

  // Platform admins rename, disable and enable sites; every admin rotates the auth keys of the
  // sites they manage.
  function siteButtons(site) {
    const buttons = [];
    if (isPlatformAdmin()) {
      buttons.push(rowActionButton(site.site_key, 'rename', 'Rename', `Rename “${site.name}”`));
      buttons.push(site.enabled
        ? rowActionButton(site.site_key, 'disable', 'Disable', `Disable “${site.name}”`)
        : rowActionButton(site.site_key, 'enable', 'Enable', `Enable “${site.name}”`));
    }
    buttons.push(rowActionButton(site.site_key, 'rotate', 'Rotate auth key', `Rotate the auth key of “${site.name}”`));
    return buttons;
  }

  const siteButton = (siteKey, action) => rowButton('site-list', siteKey, action);

  // Puts a changed site into the list in place (the API's site view, or a part of it).
  function replaceSite(changed) {
    siteList.sites = siteList.sites.map((site) => (
      site.site_key === changed.site_key ? { ...site, ...changed } : site));
    renderSites();
  }

  $('site-search').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => loadSites($('site-search').value.trim()), SEARCH_DELAY_MS);
  });

  $('more-sites').addEventListener('click', () => loadSites(siteList.query, { more: true }));

  $('site-list').addEventListener('click', (event) => {
    const button = event.target.closest('button[data-action]');
    if (!button) return;
    const site = siteList.sites.find((s) => s.site_key === button.dataset.key);
    if (!site) return;
    const action = button.dataset.action;
    if (action === 'rename') openSiteName(site);
    else if (action === 'rotate') openAuthKeyRotation(site);
    else confirmSiteEnabled(site, action === 'enable');
  });

  // Create a site (site === null) or rename one.
  let siteNamed = null;

  function openSiteName(site) {
    siteNamed = site;
    $('site-name-form').reset();
    formError('site-name-error', '');
    fieldError('site-name', 'name', '');
    $('site-name-title').textContent = site ? `Rename “${site.name}”` : 'Create a site';
    $('site-name-submit').textContent = site ? 'Rename' : 'Create';
    if (site) $('site-name-name').value = site.name;
    openDialog($('site-name-dialog'), {
      focus: $('site-name-name'),
      returnFocus: () => (site ? siteButton(site.site_key, 'rename') : $('create-site')) || fallbackFocus(),
    });
  }

  $('create-site').addEventListener('click', () => openSiteName(null));

  $('site-name-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const site = siteNamed;
    const name = $('site-name-name').value.trim();
    if (!name) {
      fieldError('site-name', 'name', 'Enter a name.');
      $('site-name-name').focus();
      return;
    }
    const outcome = await submitDialog($('site-name-dialog'), {
      button: $('site-name-submit'),
      busy: site ? 'Renaming…' : 'Creating…',
      prefix: 'site-name',
      fields: { name: 'name' },
      gone: GONE.site,
      send: () => (site
        ? api('PATCH', `sites/${enc(site.site_key)}`, { name })
        : api('POST', 'sites', { name })),
    });
    if (!outcome) return;
    const { answer } = outcome;
    if (site) {
      replaceSite(answer);
      flash(`Site renamed to “${answer.name}”.`, 'success');
      (siteButton(site.site_key, 'rename') || fallbackFocus()).focus();
      return;
    }
    await loadSites(siteList.query);
    showSecret({
      title: `Site “${answer.name}” created`,
      label: 'Auth key',
      value: answer.auth_key,
      note: ['Its site key is ', el('code', {}, answer.site_key),
        '. Give both to the site’s integration: they are its client ID and secret for /oauth2/token.'],
      returnFocus: () => $('create-site'),
    });
  });

  function confirmSiteEnabled(site, enabled) {
    const action = enabled ? 'enable' : 'disable';
    confirmAction({
      title: `${enabled ? 'Enable' : 'Disable'} “${site.name}”?`,
      explanation: enabled
        ? 'The site can get tokens again, and its tokens work again at once.'
        : 'The site can no longer get tokens, and every token of it, the primary token included, '
          + 'stops working at once. Nothing is deleted: enabling the site brings its tokens back.',
      button: enabled ? 'Enable' : 'Disable',
      busy: enabled ? 'Enabling…' : 'Disabling…',
      danger: !enabled,
      gone: GONE.site,
      returnFocus: () => siteButton(site.site_key, action) || fallbackFocus(),
      send: () => api('PATCH', `sites/${enc(site.site_key)}`, { enabled }),
      done: (answer) => {
        replaceSite(answer);
        flash(enabled
          ? `Site “${answer.name}” enabled. It works again.`
          : `Site “${answer.name}” disabled. It and its tokens no longer work.`, 'success');
        (siteButton(site.site_key, enabled ? 'disable' : 'enable') || fallbackFocus()).focus();
      },
    });
  }

  // "Old … works until …" under a status, while a rotation's overlap runs.
  function appendOverlap(cell, what, until) {
    if (until && Date.parse(until) > Date.now()) {
      cell.append(el('span', { class: 'hint overlap' }, `Old ${what} works until `, momentElement(until)));
    }
  }

  // Rotate a secret (a site's auth key, a resource server's or an admin's client secret), the old
  // one working on for the overlap chosen. `rotation` says whose: the words, the request and what
  // to do with the answer (whose new secret is `answer[rotation.field]`).
  let rotation = null;

  function openRotation(target) {
    rotation = target;
    $('rotate-form').reset();
    formError('rotate-error', '');
    $('rotate-title').textContent = target.title;
    $('rotate-explanation').textContent = target.explanation;
    $('rotate-legend').textContent = `How long may the current ${target.what} keep working?`;
    $('rotate-submit').textContent = `Rotate ${target.what}`;
    openDialog($('rotate-dialog'), {
      focus: $('rotate-form').querySelector('input[name="overlap"]:checked'),
      returnFocus: target.returnFocus,
    });
  }

  $('rotate-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const target = rotation;
    if (!target) return;
    const overlap = Number($('rotate-form').querySelector('input[name="overlap"]:checked').value);
    const outcome = await submitDialog($('rotate-dialog'), {
      button: $('rotate-submit'),
      busy: 'Rotating…',
      prefix: 'rotate',
      gone: target.gone,
      send: () => api('POST', target.path, { overlap_seconds: overlap }),
    });
    if (!outcome) return;
    const { answer } = outcome;
    rotation = null;
    await target.done(answer);
    showSecret({
      title: `New ${target.what} for “${target.name}”`,
      label: target.what.charAt(0).toUpperCase() + target.what.slice(1),
      value: answer[target.field],
      note: answer.previous_valid_until
        ? [`The old ${target.what} keeps working until `, momentElement(answer.previous_valid_until),
          '; from then on only this one works.']
        : `The old ${target.what} no longer works: only this one does.`,
      returnFocus: target.returnFocus,
    });
  });

  function openAuthKeyRotation(site) {
    openRotation({
      name: site.name,
      what: 'auth key',
      field: 'auth_key',
      title: `Rotate the auth key of “${site.name}”?`,
      explanation: 'The site gets a new auth key, shown once. Its integration needs it for '
        + '/oauth2/token; its tokens keep working.',
      path: `sites/${enc(site.site_key)}/auth-key`,
      gone: GONE.site,
      returnFocus: () => siteButton(site.site_key, 'rotate') || fallbackFocus(),
      done: (answer) => replaceSite({
        site_key: answer.site_key, previous_auth_key_valid_until: answer.previous_valid_until,
      }),
    });
  }

  // ---------------------------------------------------------------------------------------------
  // A site's tokens
  // ---------------------------------------------------------------------------------------------

  let siteRequest = 0;

  async function openSite(siteKey) {
    const sequence = ++siteRequest;
    state = { siteKey, site: null, tokens: [], selected: new Set() };
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
    // A selection keeps the tokens still listed (another admin may have retired some).
    const listed = new Set(tokens.map((token) => token.id));
    state.selected = new Set([...state.selected].filter((id) => listed.has(id)));
    $('tokens-body').replaceChildren(...tokens.map(tokenRow));
    renderSelection();
  }

  // The bulk bar shows while tokens are selected, and says how many.
  function renderSelection() {
    const count = state.selected.size;
    show($('bulk-bar'), count > 0);
    $('bulk-count').textContent = `${plural(count, 'token', 'tokens')} selected`;
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
    const select = el('td', { class: 'select', 'data-label': 'Select' });
    if (!primary) {
      const box = el('input', {
        type: 'checkbox',
        'data-select': token.id,
        'aria-label': `Select “${token.description}”`,
      });
      box.checked = state.selected.has(token.id);
      select.append(box);
    }
    const cells = [
      select,
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
        ? [el('span', { class: 'hint' }, 'Managed by the site’s integration'), ' ', historyButton(token)]
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

  function tokenButton(token, action, label) {
    return el('button', {
      type: 'button',
      class: 'button small',
      'data-action': action,
      'data-token-id': token.id,
      'aria-label': `${label} “${token.description}”`,
    }, label);
  }

  function historyButton(token) {
    return tokenButton(token, 'history', 'History');
  }

  function actionButtons(token) {
    return [
      tokenButton(token, 'regenerate', 'Regenerate'),
      token.active ? tokenButton(token, 'invalidate', 'Invalidate') : tokenButton(token, 'validate', 'Validate'),
      historyButton(token),
      tokenButton(token, 'retire', 'Retire'),
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
    else if (button.dataset.action === 'retire') confirmRetirement(token);
    else openAction(token, button.dataset.action);
  });

  $('tokens-body').addEventListener('change', (event) => {
    const box = event.target.closest('input[data-select]');
    if (!box) return;
    const id = Number(box.dataset.select);
    if (box.checked) state.selected.add(id);
    else state.selected.delete(id);
    renderSelection();
  });

  $('bulk-clear').addEventListener('click', () => {
    state.selected.clear();
    for (const box of document.querySelectorAll('#tokens-body input[data-select]')) box.checked = false;
    renderSelection();
    const first = document.querySelector('#tokens-body input[data-select]');
    if (first) first.focus();
  });

  // ---------------------------------------------------------------------------------------------
  // Retire, one or many; invalidate and validate many
  // ---------------------------------------------------------------------------------------------

  const RETIRE_EXPLANATION = 'A retired token stops working at once and for good, and leaves the list, '
    + 'which frees its place for a new token. Its history stays in the site’s history.';

  function confirmRetirement(token) {
    confirmAction({
      title: `Retire “${token.description}”?`,
      explanation: RETIRE_EXPLANATION,
      button: 'Retire',
      busy: 'Retiring…',
      danger: true,
      gone: 'This token no longer exists: another admin may have retired it.',
      returnFocus: () => actionButton(token.id, 'retire') || fallbackFocus(),
      send: () => api('DELETE', `sites/${enc(state.siteKey)}/tokens/${token.id}`),
      done: async () => {
        state.selected.delete(token.id);
        await refreshTokens();
        flash(`Token “${token.description}” retired. It no longer works.`, 'success');
        fallbackFocus().focus();
      },
    });
  }

  const BULK = {
    invalidate: {
      button: 'Invalidate',
      busy: 'Invalidating…',
      explain: 'They stop working at once. They stay in the list, and you can validate them again later.',
      done: (count) => `${plural(count, 'token', 'tokens')} invalidated.`,
    },
    validate: {
      button: 'Validate',
      busy: 'Validating…',
      explain: 'They work again at once. An expired token cannot be validated without a new expiry: '
        + 'validate it on its own row.',
      done: (count) => `${plural(count, 'token', 'tokens')} validated.`,
    },
    retire: {
      button: 'Retire',
      busy: 'Retiring…',
      danger: true,
      explain: 'Retired tokens stop working at once and for good, and leave the list, which frees '
        + 'their places for new tokens. Their history stays in the site’s history.',
      done: (count) => `${plural(count, 'token', 'tokens')} retired. They no longer work.`,
    },
  };

  $('bulk-bar').addEventListener('click', (event) => {
    const button = event.target.closest('button[data-bulk]');
    if (!button) return;
    const action = button.dataset.bulk;
    const spec = BULK[action];
    const ids = [...state.selected].sort((a, b) => a - b);
    if (ids.length === 0) return;
    const count = ids.length;
    confirmAction({
      title: `${spec.button} ${plural(count, 'token', 'tokens')}?`,
      explanation: `${spec.explain} Either all ${plural(count, 'selected token', 'selected tokens')} change, or none does.`,
      button: `${spec.button} ${plural(count, 'token', 'tokens')}`,
      busy: spec.busy,
      danger: Boolean(spec.danger),
      gone: 'One of the selected tokens no longer exists: another admin may have retired it. Nothing was changed.',
      returnFocus: () => button,
      send: () => api('POST', `sites/${enc(state.siteKey)}/tokens/bulk`, { action, ids }),
      done: async () => {
        state.selected.clear();
        await refreshTokens();
        flash(spec.done(count), 'success');
        fallbackFocus().focus();
      },
    });
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

  // A datetime-local value (local time, minutes) for `date`.
  function localInputValue(date) {
    const pad = (number) => String(number).padStart(2, '0');
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`
      + `T${pad(date.getHours())}:${pad(date.getMinutes())}`;
  }

  // Limits an expiry input to the server's terms: from now to the furthest expiry it accepts.
  function applyExpiryTerms(input, required) {
    const terms = me && me.token_terms;
    const now = new Date();
    input.min = localInputValue(now);
    if (terms) {
      input.max = localInputValue(new Date(now.getTime() + terms.max_lifetime_days * 86400000));
    }
    input.required = Boolean(required);
  }

  // What the create form says about expiry: what an empty field means here, and the furthest.
  function describeExpiryTerms() {
    const terms = me && me.token_terms;
    if (!terms) return;
    let text = 'Leave empty for a token that does not expire.';
    if (terms.default_lifetime_days !== null) {
      text = `Left empty, it expires in ${plural(terms.default_lifetime_days, 'day', 'days')}.`;
    } else if (terms.expiry_required) {
      text = 'Required by this server.';
    }
    $('create-expires-terms').textContent = `${text} At most ${plural(terms.max_lifetime_days, 'day', 'days')} ahead.`;
  }

  $('create-token').addEventListener('click', () => {
    resetCreateForm();
    applyExpiryTerms($('create-expires'), me && me.token_terms && me.token_terms.expiry_required);
    describeExpiryTerms();
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
    showSecret({ title: `Token “${created.description}” created`, value: created.value, returnFocus: fallbackFocus });
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
        + (token.active ? '' : ' The token stays inactive until you validate it.')
        + (isExpired(token) ? ' The token has expired: give it a new expiry.' : ''),
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
        ? 'The token has expired: give it a new expiry to make it work again.'
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
    fieldError('action', 'expires', '');
    // Regenerate and validate may set a new expiry; an expired token needs one.
    const setsExpiry = action !== 'invalidate';
    show($('action-expires-field'), setsExpiry);
    $('action-expires-optional').textContent = isExpired(token) ? '(required: the token has expired)' : '(optional)';
    applyExpiryTerms($('action-expires'), isExpired(token));
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
    fieldError('action', 'expires', '');
    const description = $('action-description').value.trim();
    const expiresInput = $('action-expires');
    const body = {};
    if (description) body.description = description;
    if (action !== 'invalidate' && expiresInput.validity.badInput) {
      fieldError('action', 'expires', 'Enter a complete date and time, or leave the field empty.');
      expiresInput.focus();
      return;
    }
    if (action !== 'invalidate' && expiresInput.value) body.expires_at = localToUtc(expiresInput.value);
    const button = $('action-submit');
    setBusy(button, true, spec.busy);
    let answer;
    try {
      answer = await api(
        'POST',
        `sites/${enc(state.siteKey)}/tokens/${token.id}/${action}`,
        Object.keys(body).length ? body : undefined,
      );
    } catch (error) {
      if (error.handled) return;
      const input = { description: 'description', expires_at: 'expires' }[error.field];
      if (error.status === 422 && input) {
        fieldError('action', input, fieldMessage(error));
        $(`action-${input}`).focus();
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
      showSecret({ title: `New value for “${answer.description}”`, value: answer.value, returnFocus });
    } else {
      flash(spec.done(answer), 'success');
      const target = returnFocus();
      if (target) target.focus();
    }
  });

  // ---------------------------------------------------------------------------------------------
  // The one-time value
  // ---------------------------------------------------------------------------------------------

  // `label` names the value; `note` (text or nodes) says what else to know about it.
  function showSecret({ title, label = 'Token value', value, note = null, returnFocus }) {
    $('secret-title').textContent = title;
    $('secret-label').textContent = label;
    $('secret-value').textContent = value;
    $('secret-note').replaceChildren(...(note === null ? [] : [].concat(note)));
    show($('secret-note'), note !== null);
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
    retired: () => 'Retired',
  };

  // The history dialog's current listing: where its next page comes from.
  let historyListing = null;

  function openHistory(token) {
    showHistory({
      title: `History of “${token.description}”`,
      path: `sites/${enc(state.siteKey)}/tokens/${token.id}/history`,
      siteWide: false,
      returnFocus: () => actionButton(token.id, 'history') || fallbackFocus(),
    });
  }

  function openSiteHistory() {
    showHistory({
      title: `History of ${state.site ? state.site.name : 'this site'}: every token, newest first`,
      path: `sites/${enc(state.siteKey)}/history`,
      siteWide: true,
      returnFocus: () => $('site-history'),
    });
  }

  $('site-history').addEventListener('click', openSiteHistory);

  async function showHistory({ title, path, siteWide, returnFocus }) {
    const listing = { path, siteWide };
    historyListing = listing;
    $('history-title').textContent = title;
    formError('history-error', '');
    for (const cell of document.querySelectorAll('#history-head [data-site-only]')) show(cell, siteWide);
    const columns = siteWide ? 4 : 3;
    $('history-body').replaceChildren(el('tr', {}, el('td', { colspan: columns }, 'Loading…')));
    show($('history-more'), false);
    openDialog($('history-dialog'), { focus: $('history-dialog').querySelector('[data-close]'), returnFocus });
    await loadHistoryPage(listing, null);
  }

  // Appends one page of `listing` (the first when `cursor` is null).
  async function loadHistoryPage(listing, cursor) {
    const body = $('history-body');
    const more = $('history-more');
    let answer;
    try {
      answer = await api('GET', cursor ? `${listing.path}?cursor=${enc(cursor)}` : listing.path);
    } catch (error) {
      if (error.handled || historyListing !== listing) return;
      if (!cursor) body.replaceChildren();
      formError('history-error', describe(error));
      return;
    }
    if (historyListing !== listing) return;
    const rows = answer.events.map((entry) => historyRow(entry, listing.siteWide));
    if (!cursor) {
      body.replaceChildren(...(rows.length
        ? rows
        : [el('tr', {}, el('td', { colspan: listing.siteWide ? 4 : 3 }, 'No events yet.'))]));
    } else {
      body.append(...rows);
    }
    listing.next = answer.next || null;
    show(more, Boolean(listing.next));
  }

  $('history-more').addEventListener('click', async () => {
    const listing = historyListing;
    if (!listing || !listing.next) return;
    const button = $('history-more');
    setBusy(button, true, 'Loading…');
    try {
      await loadHistoryPage(listing, listing.next);
    } finally {
      setBusy(button, false);
    }
  });

  function historyRow(entry, siteWide) {
    const by = entry.actor.kind === 'admin'
      ? [entry.actor.name, ' ', el('span', { class: 'tag' }, 'admin')]
      : ['The site’s integration ', el('span', { class: 'tag' }, 'site')];
    const words = (EVENTS[entry.event] || (() => entry.event))(entry.detail);
    const cells = [el('td', { 'data-label': 'Time' }, timeElement(entry.occurred_at))];
    if (siteWide) {
      cells.push(el('td', { 'data-label': 'Token' },
        entry.description === null ? `Token ${entry.token_id}` : `“${entry.description}”`));
    }
    cells.push(el('td', { 'data-label': 'By' }, ...by), el('td', { 'data-label': 'Event' }, words));
    return el('tr', { 'data-event': entry.event, 'data-token-id': entry.token_id ?? null }, ...cells);
  }

  // ---------------------------------------------------------------------------------------------
  // Resource servers (platform admins)
  // ---------------------------------------------------------------------------------------------

  let resourceServers = [];
  let resourceServersRequest = 0;

  function openResourceServers() {
    showView('resource-servers-view', 'Resource servers');
    loadResourceServers();
  }

  async function loadResourceServers() {
    const sequence = ++resourceServersRequest;
    $('resource-servers-count').textContent = 'Loading resource servers…';
    let answer;
    try {
      answer = await api('GET', 'resource-servers');
    } catch (error) {
      if (sequence !== resourceServersRequest || error.handled) return;
      $('resource-servers-count').textContent = '';
      flash(describe(error), 'error');
      return;
    }
    if (sequence !== resourceServersRequest) return;
    resourceServers = answer.resource_servers;
    $('resource-servers-count').textContent = resourceServers.length
      ? plural(resourceServers.length, 'resource server', 'resource servers')
      : 'No resource server yet. Create one for each API that checks tokens.';
    $('resource-server-list').replaceChildren(...resourceServers.map(resourceServerRow));
  }

  function resourceServerRow(server) {
    const limited = Array.isArray(server.site_keys);
    const scope = el('td', { 'data-label': 'May check tokens of' },
      limited ? plural(server.site_keys.length, 'site', 'sites') : 'Every site');
    const buttons = [
      rowActionButton(server.client_id, 'rotate', 'Rotate secret', `Rotate the secret of “${server.name}”`),
      rowActionButton(server.client_id, 'delete', 'Delete', `Delete “${server.name}”`),
    ];
    if (limited) {
      buttons.unshift(rowActionButton(server.client_id, 'sites', 'Sites', `Sites of “${server.name}”`));
    }
    const name = el('td', { 'data-label': 'Name' }, el('span', { class: 'record-name' }, server.name));
    appendOverlap(name, 'secret', server.previous_secret_valid_until);
    return el('tr', { 'data-key': server.client_id },
      name,
      el('td', { 'data-label': 'Client ID' }, el('code', { class: 'key' }, server.client_id)),
      scope,
      el('td', { 'data-label': 'Created' }, timeElement(server.created_at)),
      el('td', { class: 'actions', 'data-label': 'Actions' }, ...buttons));
  }

  const resourceServerButton = (clientId, action) => rowButton('resource-server-list', clientId, action);

  $('resource-server-list').addEventListener('click', (event) => {
    const button = event.target.closest('button[data-action]');
    if (!button) return;
    const server = resourceServers.find((s) => s.client_id === button.dataset.key);
    if (!server) return;
    if (button.dataset.action === 'sites') showResourceServerSites(server);
    else if (button.dataset.action === 'rotate') openSecretRotation(server, 'resource-servers', {
      explanation: 'The resource server gets a new client secret, shown once. The API that uses it '
        + 'needs it for /oauth2/introspect.',
      gone: GONE.resourceServer,
      returnFocus: () => resourceServerButton(server.client_id, 'rotate') || fallbackFocus(),
      done: loadResourceServers,
    });
    else confirmResourceServerDeletion(server);
  });

  // A resource server's or an admin's client secret (platform admins).
  function openSecretRotation(client, collection, target) {
    openRotation({
      ...target,
      name: client.name,
      what: 'client secret',
      field: 'client_secret',
      title: `Rotate the client secret of “${client.name}”?`,
      path: `${collection}/${enc(client.client_id)}/secret`,
    });
  }

  // The sites a resource server is limited to, as the server has them now.
  async function showResourceServerSites(server) {
    $('resource-server-sites-title').textContent = `Sites “${server.name}” may check`;
    formError('resource-server-sites-load-error', '');
    $('resource-server-sites-summary').textContent = 'Loading…';
    $('resource-server-site-keys').replaceChildren();
    openDialog($('resource-server-sites-dialog'), {
      focus: $('resource-server-sites-dialog').querySelector('[data-close]'),
      returnFocus: () => resourceServerButton(server.client_id, 'sites') || fallbackFocus(),
    });
    let answer;
    try {
      answer = await api('GET', `resource-servers/${enc(server.client_id)}`);
    } catch (error) {
      if (error.handled) return;
      $('resource-server-sites-summary').textContent = '';
      formError('resource-server-sites-load-error', describe(error, GONE.resourceServer));
      return;
    }
    const keys = answer.site_keys;
    $('resource-server-sites-summary').textContent = Array.isArray(keys)
      ? `It may check the tokens of ${plural(keys.length, 'site', 'sites')} only:`
      : 'It may check the tokens of every site.';
    $('resource-server-site-keys').replaceChildren(
      ...(keys || []).map((key) => el('li', {}, el('code', {}, key))));
  }

  function confirmResourceServerDeletion(server) {
    confirmAction({
      title: `Delete “${server.name}”?`,
      explanation: 'Its client ID and secret stop working at once: the API using them can no longer '
        + 'check tokens. Tokens meant only for it are then checked by no API. This cannot be undone.',
      button: 'Delete',
      busy: 'Deleting…',
      danger: true,
      gone: GONE.resourceServer,
      returnFocus: () => resourceServerButton(server.client_id, 'delete') || fallbackFocus(),
      send: () => api('DELETE', `resource-servers/${enc(server.client_id)}`),
      done: async () => {
        await loadResourceServers();
        flash(`Resource server “${server.name}” deleted. Its credentials no longer work.`, 'success');
        $('create-resource-server').focus();
      },
    });
  }

  $('create-resource-server').addEventListener('click', () => {
    $('resource-server-form').reset();
    formError('resource-server-error', '');
    fieldError('resource-server', 'name', '');
    fieldError('resource-server', 'sites', '');
    openDialog($('resource-server-dialog'), {
      focus: $('resource-server-name'),
      returnFocus: () => $('create-resource-server'),
    });
  });

  $('resource-server-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = $('resource-server-name').value.trim();
    if (!name) {
      fieldError('resource-server', 'name', 'Enter a name: the API that will use these credentials.');
      $('resource-server-name').focus();
      return;
    }
    const body = { name };
    const sites = keysIn($('resource-server-sites'));
    if (sites.length) body.sites = sites;
    const outcome = await submitDialog($('resource-server-dialog'), {
      button: $('resource-server-submit'),
      busy: 'Creating…',
      prefix: 'resource-server',
      fields: { name: 'name', sites: 'sites' },
      send: () => api('POST', 'resource-servers', body),
    });
    if (!outcome) return;
    const { answer } = outcome;
    await loadResourceServers();
    showSecret({
      title: `Resource server “${answer.name}” created`,
      label: 'Client secret',
      value: answer.client_secret,
      note: ['Its client ID is ', el('code', {}, answer.client_id),
        '. The API uses both to check tokens at /oauth2/introspect.'],
      returnFocus: () => $('create-resource-server'),
    });
  });

  // ---------------------------------------------------------------------------------------------
  // Admins (platform admins)
  // ---------------------------------------------------------------------------------------------

  let admins = [];
  let adminsRequest = 0;

  function openAdmins() {
    showView('admins-view', 'Admins');
    loadAdmins();
  }

  async function loadAdmins() {
    const sequence = ++adminsRequest;
    $('admins-count').textContent = 'Loading admins…';
    let answer;
    try {
      answer = await api('GET', 'admins');
    } catch (error) {
      if (sequence !== adminsRequest || error.handled) return;
      $('admins-count').textContent = '';
      flash(describe(error), 'error');
      return;
    }
    if (sequence !== adminsRequest) return;
    admins = answer.admins;
    renderAdmins();
  }

  function renderAdmins() {
    $('admins-count').textContent = plural(admins.length, 'admin', 'admins');
    $('admin-list').replaceChildren(...admins.map(adminRow));
  }

  function adminRow(admin) {
    const name = el('td', { 'data-label': 'Name' }, el('span', { class: 'record-name' }, admin.name));
    if (me && admin.client_id === me.client_id) name.append(' ', el('span', { class: 'tag' }, 'you'));
    appendOverlap(name, 'secret', admin.previous_secret_valid_until);
    const sites = Array.isArray(admin.site_keys) ? keyList(admin.site_keys) : 'Every site';
    const toggle = admin.enabled
      ? rowActionButton(admin.client_id, 'disable', 'Disable', `Disable “${admin.name}”`)
      : rowActionButton(admin.client_id, 'enable', 'Enable', `Enable “${admin.name}”`);
    return el('tr', { 'data-key': admin.client_id },
      name,
      el('td', { 'data-label': 'Client ID' }, el('code', { class: 'key' }, admin.client_id)),
      el('td', { 'data-label': 'Role' }, ROLES[admin.role] || admin.role),
      el('td', { 'data-label': 'Sites' }, sites),
      el('td', { 'data-label': 'Status' }, el('span', {
        class: `badge ${admin.enabled ? 'on' : 'off'}`, 'data-status': admin.enabled ? 'enabled' : 'disabled',
      }, admin.enabled ? 'Enabled' : 'Disabled')),
      el('td', { 'data-label': 'Created' }, timeElement(admin.created_at)),
      el('td', { class: 'actions', 'data-label': 'Actions' },
        rowActionButton(admin.client_id, 'access', 'Change access', `Change the access of “${admin.name}”`),
        rowActionButton(admin.client_id, 'rotate', 'Rotate secret', `Rotate the secret of “${admin.name}”`),
        toggle));
  }

  const adminButton = (clientId, action) => rowButton('admin-list', clientId, action);

  function replaceAdmin(changed) {
    admins = admins.map((admin) => (admin.client_id === changed.client_id ? changed : admin));
    renderAdmins();
  }

  $('admin-list').addEventListener('click', (event) => {
    const button = event.target.closest('button[data-action]');
    if (!button) return;
    const admin = admins.find((a) => a.client_id === button.dataset.key);
    if (!admin) return;
    if (button.dataset.action === 'access') openAdminForm(admin);
    else if (button.dataset.action === 'rotate') openSecretRotation(admin, 'admins', {
      explanation: 'They get a new client secret, shown once, to sign in with. Sessions they have '
        + 'keep working until they expire; disable them to end those at once.',
      gone: GONE.admin,
      returnFocus: () => adminButton(admin.client_id, 'rotate') || fallbackFocus(),
      done: loadAdmins,
    });
    else confirmAdminEnabled(admin, button.dataset.action === 'enable');
  });

  function confirmAdminEnabled(admin, enabled) {
    const action = enabled ? 'enable' : 'disable';
    confirmAction({
      title: `${enabled ? 'Enable' : 'Disable'} “${admin.name}”?`,
      explanation: enabled
        ? 'They can sign in again with their client ID and secret.'
        : 'They can no longer sign in, and the sessions they have end at once. Enabling them again '
          + 'lets them sign in anew.',
      button: enabled ? 'Enable' : 'Disable',
      busy: enabled ? 'Enabling…' : 'Disabling…',
      danger: !enabled,
      gone: GONE.admin,
      returnFocus: () => adminButton(admin.client_id, action) || fallbackFocus(),
      send: () => api('PATCH', `admins/${enc(admin.client_id)}`, { enabled }),
      done: (answer) => {
        replaceAdmin(answer);
        flash(enabled ? `“${answer.name}” enabled.` : `“${answer.name}” disabled. They can no longer sign in.`,
          'success');
        (adminButton(admin.client_id, enabled ? 'disable' : 'enable') || fallbackFocus()).focus();
      },
    });
  }

  // One form to create an admin (admin === null) or change an admin's role and sites.
  let adminChanged = null;

  function chosenRole() {
    const checked = $('admin-role').querySelector('input:checked');
    return checked ? checked.value : null;
  }

  // A platform admin manages every site: the site field is for site managers only.
  function showSitesForRole() {
    show($('admin-sites-field'), chosenRole() !== 'platform-admin');
  }

  function openAdminForm(admin) {
    adminChanged = admin;
    $('admin-form').reset();
    formError('admin-error', '');
    for (const field of ['name', 'role', 'sites']) fieldError('admin', field, '');
    $('admin-title').textContent = admin ? `Change the access of “${admin.name}”` : 'Create an admin';
    $('admin-submit').textContent = admin ? 'Save' : 'Create';
    show($('admin-name-field'), !admin);
    const role = admin ? admin.role : 'site-manager';
    $('admin-role').querySelector(`input[value="${role}"]`).checked = true;
    $('admin-sites').value = admin && Array.isArray(admin.site_keys) ? admin.site_keys.join(' ') : '';
    showSitesForRole();
    openDialog($('admin-dialog'), {
      focus: admin ? $('admin-role').querySelector('input:checked') : $('admin-name'),
      returnFocus: () => (admin ? adminButton(admin.client_id, 'access') : $('create-admin')) || fallbackFocus(),
    });
  }

  $('create-admin').addEventListener('click', () => openAdminForm(null));
  $('admin-role').addEventListener('change', showSitesForRole);

  $('admin-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const admin = adminChanged;
    const role = chosenRole();
    const body = { role };
    if (role === 'site-manager') {
      body.sites = keysIn($('admin-sites'));
      if (!body.sites.length) {
        fieldError('admin', 'sites', 'Enter the site keys of the sites a site manager manages.');
        $('admin-sites').focus();
        return;
      }
    }
    if (!admin) {
      body.name = $('admin-name').value.trim();
      if (!body.name) {
        fieldError('admin', 'name', 'Enter a name.');
        $('admin-name').focus();
        return;
      }
    }
    const outcome = await submitDialog($('admin-dialog'), {
      button: $('admin-submit'),
      busy: admin ? 'Saving…' : 'Creating…',
      prefix: 'admin',
      fields: { name: 'name', role: 'role', sites: 'sites' },
      gone: GONE.admin,
      send: () => (admin
        ? api('PATCH', `admins/${enc(admin.client_id)}`, body)
        : api('POST', 'admins', body)),
    });
    if (!outcome) return;
    const { answer } = outcome;
    if (admin) {
      replaceAdmin(answer);
      flash(`Access of “${answer.name}” changed: ${ROLES[answer.role] || answer.role}.`, 'success');
      (adminButton(admin.client_id, 'access') || fallbackFocus()).focus();
      return;
    }
    await loadAdmins();
    showSecret({
      title: `Admin “${answer.name}” created`,
      label: 'Client secret',
      value: answer.client_secret,
      note: ['Their client ID is ', el('code', {}, answer.client_id),
        '. They sign in to this page with both.'],
      returnFocus: () => $('create-admin'),
    });
  });

  // ---------------------------------------------------------------------------------------------

  window.addEventListener('hashchange', () => {
    flash('');
    route();
  });
  route();
})();
