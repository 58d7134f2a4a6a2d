'use server';
import { cookies, headers } from 'next/headers';
import { redirect } from 'next/navigation';
import { isHttps, sessions } from '../lib/sessions';
import { checkPassword } from '../lib/users';

export async function login(_state: string | null, form: FormData): Promise<string | null> {
  const userId = await checkPassword(String(form.get('email')), String(form.get('password')));
  if (userId === null) return 'Wrong email or password.';
  const jar = await cookies();
  const loaded = await sessions().fromCookies(jar, { secure: isHttps(await headers()) });
  await loaded.session!.regenerate(); // a new id at login: no fixation
  loaded.session!.userId = userId;
  await loaded.commit(); // stored, and the cookie set, before the redirect
  redirect('/dashboard');
}

export async function logout(): Promise<void> {
  const jar = await cookies();
  const loaded = await sessions().fromCookies(jar, { secure: isHttps(await headers()) });
  await loaded.session?.destroy();
  await loaded.commit(); // the cookie is cleared
  redirect('/login');
}
