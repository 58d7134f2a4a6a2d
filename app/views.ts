/**
 * Server-rendered HTML for the demo app. Every dynamic value goes through {@link esc}; nothing
 * here builds markup from unescaped input.
 */
import type { SecurityNotice, SessionInfo, UserListEntry } from '../src/auth/index.js';

/** Escape text for HTML element content and double- or single-quoted attribute values. */
export function esc(value: unknown): string {
  return String(value ?? '')
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

/** The logged-in user as the layout shows them. */
export interface ViewUser {
  email: string;
  role: 'user' | 'admin';
}

interface LayoutOptions {
  title: string;
  user?: ViewUser | null | undefined;
  csrfToken?: string | undefined;
  message?: string | undefined;
  error?: string | undefined;
}

const CSS = `
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;background:#f6f8fa}
header{background:#24292f;color:#fff}
header .bar{max-width:56rem;margin:0 auto;padding:.75rem 1rem;display:flex;gap:1rem;align-items:center;flex-wrap:wrap}
header a{color:#fff;text-decoration:none}
header a.brand{font-weight:700;margin-right:auto}
header form{margin:0}
main{max-width:56rem;margin:2rem auto;padding:0 1rem}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:1.5rem;margin-bottom:1.5rem}
h1{font-size:1.6rem;margin:0 0 1rem}
h2{font-size:1.2rem;margin:0 0 .75rem}
label{display:block;font-weight:600;margin:.75rem 0 .25rem}
input[type=email],input[type=password],input[type=text]{width:100%;max-width:24rem;padding:.5rem;border:1px solid #d0d7de;border-radius:6px;font:inherit}
button,.button{display:inline-block;padding:.4rem .9rem;border-radius:6px;border:1px solid #1f883d;background:#1f883d;color:#fff;font:inherit;cursor:pointer;text-decoration:none}
button.secondary{background:#f6f8fa;color:#24292f;border-color:#d0d7de}
button.danger,.button.danger{background:#fff;color:#cf222e;border-color:#cf222e}
header button.link{background:none;border:none;color:#fff;padding:0;text-decoration:underline}
table{width:100%;border-collapse:collapse}
th,td{text-align:left;padding:.5rem;border-bottom:1px solid #d0d7de;vertical-align:top}
td form{margin:0}
.muted{color:#57606a;font-size:.9rem}
.notice{padding:.75rem 1rem;border-radius:6px;margin-bottom:1rem;background:#ddf4ff;border:1px solid #54aeff}
.error{padding:.75rem 1rem;border-radius:6px;margin-bottom:1rem;background:#ffebe9;border:1px solid #ff8182}
.badge{display:inline-block;font-size:.75rem;padding:0 .5rem;border-radius:1rem;background:#ddf4ff;border:1px solid #54aeff}
code{font-size:.85rem;word-break:break-all}
td{overflow-wrap:anywhere}
@media (max-width:40rem){
main{margin:1rem auto;padding:0 .75rem}
.card{padding:1rem}
table.rows thead{display:none}
table.rows tr{display:block;padding:.5rem 0;border-bottom:1px solid #d0d7de}
table.rows td{display:block;border:0;padding:.15rem 0}
table.rows td[data-label]::before{content:attr(data-label) ": ";font-weight:600}
}
`;

function csrfField(token: string | undefined): string {
  return token ? `<input type="hidden" name="_csrf" value="${esc(token)}">` : '';
}

/** The page frame: header with navigation and a logout button on every authenticated page. */
export function layout(options: LayoutOptions, body: string): string {
  const { user } = options;
  const nav = user
    ? `<a href="/dashboard">Dashboard</a>
       <a href="/account/sessions">Sessions</a>
       <a href="/account">Account</a>
       <a href="/account/notices">Notices</a>
       ${user.role === 'admin' ? '<a href="/admin">Admin</a>' : ''}
       <span class="muted" style="color:#d0d7de">${esc(user.email)}</span>
       <form method="post" action="/logout">${csrfField(options.csrfToken)}<button class="link" type="submit">Log out</button></form>`
    : '<a href="/login">Log in</a>';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(options.title)} · pgsession demo</title>
<link rel="icon" href="data:,">
<style>${CSS}</style>
</head>
<body>
<header><div class="bar"><a class="brand" href="/">pgsession demo</a>${nav}</div></header>
<main>
${options.message ? `<div class="notice" role="status">${esc(options.message)}</div>` : ''}
${options.error ? `<div class="error" role="alert">${esc(options.error)}</div>` : ''}
${body}
</main>
</body>
</html>`;
}

function when(date: Date): string {
  return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

function ago(date: Date, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - date.getTime()) / 1000));
  if (s < 60) return 'just now';
  const m = Math.round(s / 60);
  if (m < 60) return `${m} minute${m === 1 ? '' : 's'} ago`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h} hour${h === 1 ? '' : 's'} ago`;
  const d = Math.round(h / 24);
  return `${d} days ago`;
}

export function homePage(options: { user: ViewUser | null; csrfToken?: string; message?: string }): string {
  const body = options.user
    ? `<div class="card"><h1>Welcome back</h1>
       <p>You are logged in as <strong>${esc(options.user.email)}</strong>.</p>
       <p><a class="button" href="/dashboard">Go to your dashboard</a></p></div>`
    : `<div class="card"><h1>Persistent, secure sessions</h1>
       <p>This demo keeps your login in PostgreSQL: restart the server and you stay logged in;
       log out and the session is gone everywhere at once.</p>
       <p><a class="button" href="/login">Log in</a></p></div>`;
  return layout(
    { title: 'Home', user: options.user, csrfToken: options.csrfToken, message: options.message },
    body,
  );
}

/** Messages for `/login?error=`; anything else shows nothing (no reflected text). */
export const LOGIN_ERRORS: Readonly<Record<string, string>> = {
  invalid_credentials: 'Invalid email or password.',
  login_required: 'Please log in to continue.',
  rate_limited: 'Too many failed attempts. Please wait and try again.',
};

export function loginPage(options: { error?: string | undefined; next?: string | undefined }): string {
  const error = options.error ? LOGIN_ERRORS[options.error] : undefined;
  const body = `<div class="card"><h1>Log in</h1>
<form method="post" action="/login">
  ${options.next ? `<input type="hidden" name="next" value="${esc(options.next)}">` : ''}
  <label for="email">Email</label>
  <input id="email" name="email" type="email" autocomplete="username" required autofocus>
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required minlength="1" maxlength="1024">
  <p><button type="submit">Log in</button></p>
</form></div>`;
  return layout({ title: 'Log in', error }, body);
}

export interface ServerRow {
  id: number;
  name: string;
  createdAt: Date;
}

export function dashboardPage(options: {
  user: ViewUser;
  servers: ServerRow[];
  csrfToken: string;
  message?: string;
  /** The database is unavailable: say the servers cannot be shown (degraded mode). */
  serversUnavailable?: boolean;
  /** Unread security notices to show (the newest few), and how many are unread in all. */
  notices?: SecurityNotice[] | undefined;
  unreadNotices?: number | undefined;
}): string {
  const rows = options.servers
    .map(
      (s) => `<tr><td>${esc(s.name)}</td><td class="muted" data-label="Added">${esc(when(s.createdAt))}</td>
<td><a class="button danger" href="/servers/${esc(s.id)}/delete">Delete</a></td></tr>`,
    )
    .join('\n');
  const body = `<div class="card"><h1>Dashboard</h1>
<p>Logged in as <strong>${esc(options.user.email)}</strong> <span class="badge">${esc(options.user.role)}</span></p></div>
${noticesCard(options.notices ?? [], options.unreadNotices ?? 0)}
<div class="card"><h2>Your servers</h2>
${options.serversUnavailable ? '<p class="error">Your servers cannot be shown right now: the database is temporarily unavailable. You are still logged in; changes are disabled until it is back.</p>' : options.servers.length ? `<table class="rows"><thead><tr><th>Name</th><th>Added</th><th></th></tr></thead><tbody>${rows}</tbody></table>` : '<p class="muted">No servers.</p>'}
</div>`;
  return layout(
    { title: 'Dashboard', user: options.user, csrfToken: options.csrfToken, message: options.message },
    body,
  );
}

/** "Delete this server?": the step before `POST /delete-server`, which cannot be undone. */
export function deleteServerPage(options: { user: ViewUser; server: ServerRow; csrfToken: string }): string {
  const body = `<div class="card"><h1>Delete this server?</h1>
<p>The server <strong>${esc(options.server.name)}</strong> (added ${esc(when(options.server.createdAt))}) will be removed from your account. This cannot be undone.</p>
<form method="post" action="/delete-server">${csrfField(options.csrfToken)}
<input type="hidden" name="serverId" value="${esc(options.server.id)}">
<p><button class="danger" type="submit">Delete ${esc(options.server.name)}</button> <a href="/dashboard">Cancel</a></p>
</form></div>`;
  return layout({ title: 'Delete server', user: options.user, csrfToken: options.csrfToken }, body);
}

/** A duration in words for the re-auth notes: "5 minutes", "30 seconds", "1 hour". */
export function inWords(ms: number): string {
  const unit = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return unit(ms / 3_600_000, 'hour');
  if (ms >= 60_000 && ms % 60_000 === 0) return unit(ms / 60_000, 'minute');
  if (ms >= 1000 && ms % 1000 === 0) return unit(ms / 1000, 'second');
  return `${ms} ms`;
}

/** The "confirm your password" form (POST /reauth), with where to go back to. */
function reauthForm(csrfToken: string, next: string | undefined, button: string): string {
  return `<form method="post" action="/reauth">${csrfField(csrfToken)}
  ${next ? `<input type="hidden" name="next" value="${esc(next)}">` : ''}
  <label for="reauthPassword">Password</label>
  <input id="reauthPassword" name="password" type="password" autocomplete="current-password" required maxlength="1024">
  <p><button type="submit">${esc(button)}</button></p>
</form>`;
}

/** Messages for `/reauth?error=` and the sessions page's `?error=`; anything else shows nothing. */
export const REAUTH_ERRORS: Readonly<Record<string, string>> = {
  reauth_required: 'Confirm your password first: this needs a recent sign-in.',
  wrong_password: 'That password is not correct.',
};

/** The standalone re-authentication page (step-up before a sensitive action). */
export function reauthPage(options: {
  user: ViewUser;
  csrfToken: string;
  next?: string | undefined;
  error?: string | undefined;
  window: number;
}): string {
  const body = `<div class="card"><h1>Confirm your password</h1>
<p class="muted">Some actions need your password from the last ${esc(inWords(options.window))}, even when you are logged in.</p>
${reauthForm(options.csrfToken, options.next, 'Confirm password')}
<p><a href="${esc(options.next ?? '/account/sessions')}">Cancel</a></p></div>`;
  return layout(
    {
      title: 'Confirm your password',
      user: options.user,
      csrfToken: options.csrfToken,
      error: options.error,
    },
    body,
  );
}

export function sessionsPage(options: {
  user: ViewUser;
  sessions: SessionInfo[];
  csrfToken: string;
  message?: string | undefined;
  error?: string | undefined;
  /**
   * Step-up (ASVS 7.5.2): when the password was not confirmed within `window` ms, revoking
   * other sessions is refused, and the page offers the form that confirms it.
   */
  reauth?: { recent: boolean; window: number } | undefined;
}): string {
  const rows = options.sessions
    .map(
      (s) => `<tr>
<td>${esc(s.device)}${s.current ? ' <span class="badge">this session</span>' : ''}${s.deviceBound ? ' <span class="badge" title="Bound to a key on the device (DBSC): its cookie alone does not work elsewhere">device-bound</span>' : ''}<br><code class="muted" title="Session id as stored (a hash; not usable as a cookie)">${esc(s.id.slice(0, 12))}…</code></td>
<td data-label="Address">${esc(s.ip ?? 'unknown')}</td>
<td data-label="Signed in">${esc(when(s.createdAt))}</td>
<td data-label="Last active">${esc(ago(s.lastActiveAt))}</td>
<td><form method="post" action="/account/sessions/${encodeURIComponent(s.id)}/revoke">${csrfField(options.csrfToken)}
<button class="${s.current ? 'secondary' : 'danger'}" type="submit">${s.current ? 'Log out' : 'Revoke'}</button></form></td>
</tr>`,
    )
    .join('\n');
  const others = options.sessions.filter((s) => !s.current).length;
  const body = `<div class="card"><h1>Your sessions</h1>
<p class="muted">Every browser where you are logged in. Revoke any you do not recognise.</p>
<table class="rows"><thead><tr><th>Device</th><th>Address</th><th>Signed in</th><th>Last active</th><th></th></tr></thead>
<tbody>${rows}</tbody></table>
${
  others > 0
    ? `<form method="post" action="/account/sessions/revoke-others" style="margin-top:1rem">${csrfField(options.csrfToken)}
<button class="danger" type="submit">Log out all other sessions (${others})</button></form>`
    : ''
}
</div>${
    options.reauth && !options.reauth.recent
      ? `
<div class="card" id="reauth"><h2>Confirm your password to manage your sessions</h2>
<p class="muted">Revoking a session needs your password from the last ${esc(inWords(options.reauth.window))}. Logging out of this one does not.</p>
${reauthForm(options.csrfToken, '/account/sessions', 'Confirm password')}</div>`
      : ''
  }`;
  return layout(
    {
      title: 'Sessions',
      user: options.user,
      csrfToken: options.csrfToken,
      message: options.message,
      error: options.error,
    },
    body,
  );
}

/**
 * The account page: change the password (current one required; "log out other sessions" ticked
 * by default) and change the email (current password required). The hidden `logoutOthers=off`
 * comes first so an unticked box still says so (a ticked one sends `off` then `on`: the last wins).
 */
export function accountPage(options: {
  user: ViewUser;
  csrfToken: string;
  message?: string | undefined;
  error?: string | undefined;
}): string {
  const body = `<div class="card"><h1>Account</h1>
<p>Logged in as <strong>${esc(options.user.email)}</strong>.</p>
<p><a href="/account/mfa">Two-factor authentication</a></p></div>
<div class="card"><h2>Change password</h2>
<form method="post" action="/account/password">${csrfField(options.csrfToken)}
  <label for="currentPassword">Current password</label>
  <input id="currentPassword" name="currentPassword" type="password" autocomplete="current-password" required maxlength="1024">
  <label for="newPassword">New password</label>
  <input id="newPassword" name="newPassword" type="password" autocomplete="new-password" required minlength="8" maxlength="1024">
  <p class="muted">At least 8 characters, any characters you like; very common passwords are refused.</p>
  <input type="hidden" name="logoutOthers" value="off">
  <p><label style="font-weight:normal"><input type="checkbox" name="logoutOthers" value="on" checked> Log out all my other sessions</label></p>
  <p><button type="submit">Change password</button></p>
</form></div>
<div class="card"><h2>Change email</h2>
<form method="post" action="/account/email">${csrfField(options.csrfToken)}
  <label for="email">New email</label>
  <input id="email" name="email" type="email" autocomplete="email" required maxlength="254">
  <label for="emailCurrentPassword">Current password</label>
  <input id="emailCurrentPassword" name="currentPassword" type="password" autocomplete="current-password" required maxlength="1024">
  <p><button type="submit">Change email</button></p>
</form></div>`;
  return layout(
    {
      title: 'Account',
      user: options.user,
      csrfToken: options.csrfToken,
      message: options.message,
      error: options.error,
    },
    body,
  );
}

export function adminPage(options: {
  user: ViewUser;
  users: UserListEntry[];
  csrfToken: string;
  message?: string | undefined;
}): string {
  const rows = options.users
    .map(
      (
        u,
      ) => `<tr><td data-label="Id">${esc(u.id)}</td><td>${esc(u.email)}</td><td data-label="Role">${esc(u.role)}</td>
<td data-label="Status">${u.disabled ? 'disabled' : 'active'}</td><td data-label="Sessions">${esc(u.sessions)}</td>
<td>${
        u.sessions > 0
          ? `<form method="post" action="/admin/users/${esc(u.id)}/revoke-sessions">${csrfField(options.csrfToken)}<button class="danger" type="submit">End sessions</button></form>`
          : ''
      }</td></tr>`,
    )
    .join('\n');
  const body = `<div class="card"><h1>Users</h1>
<table class="rows"><thead><tr><th>Id</th><th>Email</th><th>Role</th><th>Status</th><th>Sessions</th><th></th></tr></thead>
<tbody>${rows}</tbody></table></div>`;
  return layout(
    { title: 'Admin', user: options.user, csrfToken: options.csrfToken, message: options.message },
    body,
  );
}

export function logoutConfirmPage(options: {
  user: ViewUser | null;
  csrfToken?: string | undefined;
}): string {
  const body = `<div class="card"><h1>Log out?</h1>
<p>A link on another site tried to log you out. Confirm here if you meant to.</p>
<form method="post" action="/logout">${csrfField(options.csrfToken)}<button type="submit">Log out</button></form></div>`;
  return layout({ title: 'Log out', user: options.user, csrfToken: options.csrfToken }, body);
}

export function errorPage(options: {
  status: number;
  title: string;
  message: string;
  user?: ViewUser | null | undefined;
  csrfToken?: string | undefined;
}): string {
  const body = `<div class="card"><h1>${esc(options.status)} · ${esc(options.title)}</h1>
<p>${esc(options.message)}</p><p><a href="/">Back to the home page</a></p></div>`;
  return layout({ title: options.title, user: options.user, csrfToken: options.csrfToken }, body);
}

/** Where and how, in words: "Firefox 128 on Linux, 203.0.113.5, at 2026-11-29 19:40 UTC". */
function whereAndWhen(d: { device: string; ip: string; at: string }): string {
  return `${d.device}, ${d.ip}, at ${when(new Date(d.at))}`;
}

/**
 * A security notice in words (the dashboard, the notices page and the demo's outbox line): what
 * happened, and what to do if it was not the user. Plain text: escape it for HTML.
 */
export function noticeText(notice: SecurityNotice): { text: string; advice: string } {
  const reset = "If this wasn't you, change your password and log out your other sessions.";
  switch (notice.kind) {
    case 'new-sign-in':
      return { text: `New sign-in from ${whereAndWhen(notice.details)}.`, advice: reset };
    case 'failed-sign-ins':
      return {
        text: `${notice.details.failures} wrong passwords entered for your account in ${Math.round(notice.details.windowSeconds / 60)} minutes, the last from ${whereAndWhen(notice.details)}.`,
        advice:
          "If this wasn't you, someone may be guessing your password: make sure it is strong and not used elsewhere.",
      };
    case 'locked':
      return {
        text: `Sign-in to your account was blocked for ${Math.ceil(notice.details.retryAfter / 60)} minute(s) after too many failed attempts from ${whereAndWhen(notice.details)}.`,
        advice:
          "If this wasn't you, someone is guessing your password: change it if it is weak or used elsewhere.",
      };
    case 'password-changed':
      return { text: `Your password was changed from ${whereAndWhen(notice.details)}.`, advice: reset };
    case 'email-changed':
      return {
        text: `Your account's email was changed from ${notice.details.previousEmail} to ${notice.details.newEmail} from ${whereAndWhen(notice.details)}.`,
        advice: reset,
      };
    case 'second-factor-failed':
      return {
        text: `Your password was entered correctly but the two-factor code was wrong, from ${whereAndWhen(notice.details)}.`,
        advice:
          "If this wasn't you, someone knows your password: change it now and log out your other sessions.",
      };
  }
}

/** A notice as HTML, with links to where the advice is followed. */
function noticeHtml(notice: SecurityNotice): string {
  const { text, advice } = noticeText(notice);
  const linked = esc(advice)
    .replace('change your password', '<a href="/account">change your password</a>')
    .replace('log out your other sessions', '<a href="/account/sessions">log out your other sessions</a>');
  return `${esc(text)} ${linked}`;
}

/** The dashboard's card of unread security notices (nothing when there are none). */
function noticesCard(notices: SecurityNotice[], unread: number): string {
  if (notices.length === 0) return '';
  const items = notices.map((n) => `<li data-notice="${esc(n.kind)}">${noticeHtml(n)}</li>`).join('\n');
  return `<div class="card notice" role="status" id="security-notices"><h2>Security notices (${esc(unread)} unread)</h2>
<ul>${items}</ul>
<p><a href="/account/notices">See all security notices</a></p></div>`;
}

/** `/account/notices`: every notice, newest first; unread ones can be marked read (POST + CSRF). */
export function noticesPage(options: {
  user: ViewUser;
  notices: SecurityNotice[];
  csrfToken: string;
  message?: string | undefined;
}): string {
  const rows = options.notices
    .map(
      (n) => `<tr data-notice="${esc(n.kind)}"${n.readAt ? '' : ' class="unread"'}>
<td>${esc(when(n.createdAt))}${n.readAt ? '' : ' <span class="badge">new</span>'}</td>
<td>${noticeHtml(n)}</td>
<td>${
        n.readAt
          ? ''
          : `<form method="post" action="/account/notices/read">${csrfField(options.csrfToken)}
<input type="hidden" name="id" value="${esc(n.id)}"><button class="secondary" type="submit">Mark read</button></form>`
      }</td></tr>`,
    )
    .join('\n');
  const unread = options.notices.filter((n) => !n.readAt).length;
  const body = `<div class="card"><h1>Security notices</h1>
<p class="muted">Sign-ins from new devices, repeated failed attempts, lockouts, and changes to your password or email.</p>
${
  options.notices.length
    ? `<table class="rows"><thead><tr><th>When</th><th>What</th><th></th></tr></thead><tbody>${rows}</tbody></table>`
    : '<p class="muted">No security notices.</p>'
}
${
  unread > 0
    ? `<form method="post" action="/account/notices/read" style="margin-top:1rem">${csrfField(options.csrfToken)}
<button type="submit">Mark all as read (${unread})</button></form>`
    : ''
}
</div>`;
  return layout(
    { title: 'Security notices', user: options.user, csrfToken: options.csrfToken, message: options.message },
    body,
  );
}
