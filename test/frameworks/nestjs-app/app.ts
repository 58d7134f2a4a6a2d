import { timingSafeEqual } from 'node:crypto';
import {
  Body,
  type CanActivate,
  Controller,
  type ExecutionContext,
  Get,
  HttpCode,
  Injectable,
  Module,
  Post,
  Req,
  UnauthorizedException,
  UseGuards,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import type { Request } from 'express';
import pg from 'pg';
import session, { PgStore } from 'pgsession';

declare module 'pgsession' {
  interface SessionData {
    userId: number;
  }
}

// A stand-in for your user table (store argon2id hashes: pgsession/auth's login does).
const USERS = new Map([['alice@example.com', { id: 1, password: 'correct horse battery staple' }]]);
function checkPassword(email: unknown, password: unknown): number | null {
  const user = typeof email === 'string' ? USERS.get(email) : undefined;
  const given = Buffer.from(typeof password === 'string' ? password : '');
  const expected = Buffer.from(user?.password ?? '');
  return user && given.length === expected.length && timingSafeEqual(given, expected) ? user.id : null;
}

/** Lets a request through only with a logged-in session: 401 otherwise. */
@Injectable()
class LoggedIn implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest<Request>();
    if (!req.session.userId) throw new UnauthorizedException('login required');
    return true;
  }
}

@Controller()
class AccountController {
  @Post('login')
  @HttpCode(200)
  async login(@Req() req: Request, @Body() body: { email?: unknown; password?: unknown }) {
    const userId = checkPassword(body?.email, body?.password);
    if (userId === null) throw new UnauthorizedException('wrong email or password');
    await req.session.regenerate(); // a new id at login: no fixation
    req.session.userId = userId; // req.session is now the new session
    return { loggedIn: true };
  }

  @Get('me')
  @UseGuards(LoggedIn)
  me(@Req() req: Request) {
    return { userId: req.session.userId };
  }

  @Post('logout')
  @HttpCode(200)
  async logout(@Req() req: Request) {
    await req.session.destroy();
    return { loggedIn: false };
  }
}

@Module({ controllers: [AccountController] })
class AppModule {}

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
pool.on('error', (err) => console.error(`idle PostgreSQL client: ${err.message}`));
const store = new PgStore({ pool }); // creates its table
const sessions = session({
  store,
  secret: process.env.SESSION_SECRET!.split(','), // the first signs, all verify
  resave: false,
  saveUninitialized: false,
  idleTimeout: process.env.SESSION_IDLE_TIMEOUT ?? '7d', // sliding, enforced on the server
  absoluteTimeout: '30d',
  cookie: { httpOnly: true, secure: 'auto', sameSite: 'lax' },
});

const app = await NestFactory.create<NestExpressApplication>(AppModule, { logger: ['error', 'warn'] });
app.use(sessions); // as Nest's session docs use express-session
await app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1');
console.log(`listening on ${(await app.getUrl()).replace('[::1]', 'localhost')}`);

process.once('SIGTERM', async () => {
  await app.close(); // stops accepting requests, lets those in flight finish
  await sessions.flush({ touches: true }); // deferred session writes and touches
  await store.close();
  await pool.end();
});
