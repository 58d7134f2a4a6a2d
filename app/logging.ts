/**
 * What the demo writes to its log (pino JSON): the access log (never a cookie or a header), the
 * audit trail of session and auth events (sessions by their hashed key, `sid`), and the outbox
 * of security notices (the demo has no mailer).
 */
import type { IncomingMessage } from 'node:http';
import type { Request } from 'express';
import type { Logger } from 'pino';
import { pinoHttp } from 'pino-http';
import { type AuthEvent, type AuthOptions, clientAddress, userAgent } from '../src/auth/index.js';
import type { SessionEvent } from '../src/index.js';
import { noticeText } from './views.js';

/** The access log: method, path (no query), status, time. */
export function accessLog(logger: Logger) {
  return pinoHttp({
    logger,
    serializers: {
      req: (req: { method: string; url: string; id: unknown }) => ({
        id: req.id,
        method: req.method,
        url: req.url.split('?')[0],
      }),
      res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
    },
    customLogLevel: (_req, res, err) => (err || res.statusCode >= 500 ? 'error' : 'info'),
  });
}

/** Session lifecycle events as audit lines (the per-request touch/save noise left out). */
export function sessionAudit(audit: Logger) {
  return (event: SessionEvent, req: IncomingMessage) => {
    if (event.type === 'touched' || event.type === 'touch-skipped' || event.type === 'saved') return;
    const r = req as Request;
    // A session cookie used without its device's bound cookie, or a refused device proof: what
    // a copied cookie looks like, so a warning.
    const suspicious = event.type === 'device-unbound-request' || event.type === 'device-proof-refused';
    audit[suspicious ? 'warn' : 'info'](
      {
        event: `session.${event.type}`,
        sid: event.key,
        ...('previousKey' in event ? { previousSid: event.previousKey } : {}),
        ...('reason' in event ? { reason: event.reason } : {}),
        ...('action' in event ? { action: event.action } : {}),
        ...('endpoint' in event ? { endpoint: event.endpoint } : {}),
        ...('skipped' in event && event.skipped ? { skipped: event.skipped } : {}),
        userId: 'userId' in event ? event.userId : null,
        ip: req ? clientAddress(r) : null,
        ua: req ? userAgent(r) : null,
      },
      `session ${event.type}`,
    );
  };
}

/** Auth events as audit lines: failures and refusals at `warn`, the rest at `info`. */
export function authAudit(audit: Logger) {
  return (event: AuthEvent) => {
    const level =
      event.type === 'login-failed' ||
      event.type === 'rate-limited' ||
      event.type === 'password-check-unavailable' ||
      event.type === 'second-factor-failed'
        ? 'warn'
        : 'info';
    // Session keys are logged as `sid` (hashed ids), like the session events.
    const { type, ...fields } = event;
    const { key, ...rest } = fields as typeof fields & { key?: string };
    audit[level](
      { event: `auth.${type}`, ...rest, ...(key !== undefined ? { sid: key } : {}) },
      `auth ${type}`,
    );
  };
}

/**
 * Security notices written as "outbox" lines, where a real app would hand them to its mailer
 * (an email change goes to the old and the new address).
 */
export function outbox(logger: Logger): NonNullable<AuthOptions['notify']> {
  return (notice) =>
    logger.info(
      {
        event: 'outbox.security-notice',
        to: notice.to,
        kind: notice.kind,
        noticeId: notice.id,
        userId: notice.userId,
        text: Object.values(noticeText(notice)).join(' '),
      },
      'security notice (outbox: not sent, the demo has no mailer)',
    );
}
