import { cookies, headers } from 'next/headers';
import { redirect } from 'next/navigation';
import { isHttps, sessions } from '../../lib/sessions';
import { logout } from '../actions';

export default async function Dashboard() {
  const jar = await cookies();
  const loaded = await sessions().fromCookies(jar, { secure: isHttps(await headers()) });
  const userId = loaded.session?.userId;
  if (!userId) redirect('/login');
  await loaded.commit(); // records the activity: the idle timeout slides
  return (
    <main>
      <p id="who">Signed in as user {userId}</p>
      <form action={logout}>
        <button type="submit">Log out</button>
      </form>
    </main>
  );
}
