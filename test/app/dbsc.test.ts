/**
 * The demo app turns device-bound sessions (DBSC) on in `report` mode: a DBSC browser that logs
 * in registers its key, the sessions page marks the session device-bound, and the session
 * cookie used without its bound cookie is still served, and logged as such in the audit log.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { DbscBrowser } from '../dbsc/dbsc-client.js';
import { Client } from '../helpers/http.js';
import { PASSWORD, type RunningApp, startApp } from './harness.js';

let t: RunningApp;
beforeAll(async () => {
  t = await startApp();
  await t.createUser('bound@example.com');
});
afterAll(() => t?.close());

it('a DBSC browser binds its login; the sessions page says so; a copied cookie is served and reported', async () => {
  const browser = new DbscBrowser(t.url);
  const login = await browser.post('/login', { form: { email: 'bound@example.com', password: PASSWORD } });
  expect(login.status).toBe(303);
  expect(browser.offer?.path).toBe('/.pgsession/dbsc/register');
  expect((await browser.register()).status).toBe(200);
  expect(browser.jar.get('sessionId.bound')).toBeDefined();

  const page = await (await browser.get('/account/sessions')).text();
  expect(page).toContain('device-bound</span>');

  // A browser without DBSC logs in too: not marked.
  const plain = new Client(t.url);
  await plain.post('/login', { form: { email: 'bound@example.com', password: PASSWORD } });
  const rows = [
    ...(await (await plain.get('/account/sessions')).text()).matchAll(/<tr>\s*<td>([\s\S]*?)<\/tr>/g),
  ];
  expect(rows).toHaveLength(2);
  expect(rows.filter((m) => m[0].includes('device-bound</span>'))).toHaveLength(1);

  // The session cookie alone, elsewhere: served (report mode), and in the audit log.
  const thief = new Client(t.url);
  thief.jar.set('sessionId', browser.jar.get('sessionId')!);
  expect((await thief.get('/account/sessions')).status).toBe(200);
  expect(
    t.logs
      .events()
      .some(
        (e) =>
          e.event === 'session.device-unbound-request' && e.action === 'reported' && e.reason === 'missing',
      ),
  ).toBe(true);
});
