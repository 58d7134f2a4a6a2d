/**
 * Pages of the optional TOTP second factor (ASVS 6.3.3): the code step of the login, and the
 * account page that enables and disables it. Every dynamic value goes through `esc`.
 */
import qrcode from 'qrcode-generator';
import type { TotpEnrollment, TotpStatus } from '../src/auth/index.js';
import { esc, layout, type ViewUser } from './views.js';

function csrfField(token: string): string {
  return `<input type="hidden" name="_csrf" value="${esc(token)}">`;
}

/** Messages for `/login/totp?error=`; anything else shows nothing (no reflected text). */
export const TOTP_LOGIN_ERRORS: Readonly<Record<string, string>> = {
  wrong_code: 'That code is not right (or was already used). Try the next one from your app.',
};

/** The login's second step: a 6-digit code, or a recovery code. */
export function totpLoginPage(options: {
  csrfToken: string;
  next?: string | undefined;
  error?: string | undefined;
}): string {
  const error = options.error ? TOTP_LOGIN_ERRORS[options.error] : undefined;
  const body = `<div class="card"><h1>Two-factor authentication</h1>
<p>Enter the 6-digit code from your authenticator app, or one of your recovery codes.</p>
<form method="post" action="/login/totp">${csrfField(options.csrfToken)}
  ${options.next ? `<input type="hidden" name="next" value="${esc(options.next)}">` : ''}
  <label for="code">Code</label>
  <input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required maxlength="64" autofocus>
  <p><button type="submit">Verify</button></p>
</form>
<p class="muted">The code step expires 5 minutes after your password: then <a href="/login">log in again</a>.</p></div>`;
  return layout({ title: 'Two-factor authentication', error }, body);
}

/** Messages for `/account/mfa?notice=` / `?error=` (never reflected text). */
export const MFA_NOTICES: Readonly<Record<string, string>> = {
  disabled: 'Two-factor authentication is off.',
};
export const MFA_ERRORS: Readonly<Record<string, string>> = {
  wrong_password: 'Your current password is not correct.',
  wrong_code: 'That code is not right (or was already used).',
  no_enrollment: 'That setup expired or was replaced: start again.',
  already_enabled: 'Two-factor authentication is already on.',
};

/** An inline SVG QR code of `text` (no script, no external image: fits the CSP). */
export function qrSvg(text: string): string {
  const qr = qrcode(0, 'M');
  qr.addData(text);
  qr.make();
  return qr.createSvgTag({ cellSize: 4, margin: 4, scalable: true });
}

/** The account's second-factor page: status, and the form that fits it. */
export function mfaPage(options: {
  user: ViewUser;
  csrfToken: string;
  status: TotpStatus;
  message?: string | undefined;
  error?: string | undefined;
}): string {
  const { status } = options;
  const body = status.enabled
    ? `<div class="card"><h1>Two-factor authentication</h1>
<p><span class="badge">On</span> Logging in needs your password and a code from your authenticator app.</p>
<p class="muted">Recovery codes left: ${esc(status.recoveryCodesLeft)}.</p></div>
<div class="card"><h2>Turn it off</h2>
<form method="post" action="/account/mfa/disable">${csrfField(options.csrfToken)}
  <label for="currentPassword">Current password</label>
  <input id="currentPassword" name="currentPassword" type="password" autocomplete="current-password" required maxlength="1024">
  <label for="code">Code from your app (or a recovery code)</label>
  <input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required maxlength="64">
  <p><button class="danger" type="submit">Turn off two-factor authentication</button></p>
</form></div>`
    : `<div class="card"><h1>Two-factor authentication</h1>
<p><span class="badge">Off</span> Add a second step to your login: a 6-digit code from an
authenticator app (any TOTP app: Google Authenticator, Aegis, 1Password…).</p>
<form method="post" action="/account/mfa/start">${csrfField(options.csrfToken)}
  <p><button type="submit">Set up two-factor authentication</button></p>
</form>
<p class="muted">Setting it up needs a recent password: if it was not confirmed in the last few
minutes, <a href="/reauth?next=%2Faccount%2Fmfa">confirm it</a> first.</p></div>`;
  return layout(
    {
      title: 'Two-factor authentication',
      user: options.user,
      csrfToken: options.csrfToken,
      message: options.message,
      error: options.error,
    },
    body,
  );
}

/** Step 2 of the setup: the secret (QR code, base32, URI) and the confirmation form. */
export function mfaEnrollPage(options: {
  user: ViewUser;
  csrfToken: string;
  enrollment: TotpEnrollment;
}): string {
  const { enrollment } = options;
  const body = `<div class="card"><h1>Set up two-factor authentication</h1>
<p>Scan this QR code with your authenticator app, or type the key in by hand.</p>
<div style="max-width:14rem">${qrSvg(enrollment.uri)}</div>
<p>Key: <code id="totp-secret">${esc(enrollment.secret.replace(/(.{4})/g, '$1 ').trim())}</code></p>
<p class="muted">Or this URI: <code id="totp-uri">${esc(enrollment.uri)}</code></p>
<p class="muted">Keep the key to yourself: anyone who has it can generate your codes.</p>
<form method="post" action="/account/mfa/confirm">${csrfField(options.csrfToken)}
  <label for="code">The 6-digit code your app shows now</label>
  <input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required maxlength="16" autofocus>
  <p><button type="submit">Turn on</button></p>
</form></div>`;
  return layout(
    { title: 'Set up two-factor authentication', user: options.user, csrfToken: options.csrfToken },
    body,
  );
}

/** Shown once after the setup: the recovery codes (only their hashes are kept). */
export function mfaRecoveryCodesPage(options: {
  user: ViewUser;
  csrfToken: string;
  codes: string[];
}): string {
  const body = `<div class="card"><h1>Two-factor authentication is on</h1>
<p>Save these recovery codes somewhere safe. Each one logs you in once if you lose your phone.
<strong>They are shown only now.</strong></p>
<ul id="recovery-codes">${options.codes.map((c) => `<li><code>${esc(c)}</code></li>`).join('')}</ul>
<p><a class="button" href="/account/mfa">Done</a></p></div>`;
  return layout(
    {
      title: 'Recovery codes',
      user: options.user,
      csrfToken: options.csrfToken,
      message: 'Two-factor authentication is on.',
    },
    body,
  );
}
