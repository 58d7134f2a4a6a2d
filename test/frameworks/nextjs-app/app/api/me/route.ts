import { sessions } from '../../../lib/sessions';

export async function GET(request: Request): Promise<Response> {
  const loaded = await sessions().load(request);
  if (!loaded.session?.userId)
    return loaded.respond(Response.json({ error: 'login required' }, { status: 401 }));
  return loaded.respond(Response.json({ userId: loaded.session.userId }));
}
