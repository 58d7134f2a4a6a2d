// The seed's app (../shared/seed/session-management.md), CommonJS as written there, with ONLY
// its imports changed from express-session / connect-pg-simple to pgsession. (`bcrypt` is
// bcryptjs, the same API without a native build; the cookie's `secure` follows the seed's own
// advice, `process.env.NODE_ENV === 'production'`, because the test talks plain HTTP.)
const express = require('express');
const session = require('pgsession'); // was: require('express-session')
const pgSession = require('pgsession/connect-pg-simple')(session); // was: require('connect-pg-simple')(session)
const bcrypt = require('bcryptjs');
const { Pool } = require('pg');

const pool = new Pool({
  connectionString: process.env.DATABASE_URL,
  max: 20, // Max 20 concurrent connections
  idleTimeoutMillis: 30000, // Close idle connections after 30s
});

const app = express();
app.use(express.urlencoded({ extended: false }));

app.use(
  session({
    store: new pgSession({ pool, tableName: 'session', createTableIfMissing: true }),
    secret: process.env.SESSION_SECRET,
    resave: false,
    saveUninitialized: false,
    rolling: true,
    cookie: {
      maxAge: 7 * 24 * 60 * 60 * 1000, // 7 days
      httpOnly: true, // No JavaScript access (XSS protection)
      secure: process.env.NODE_ENV === 'production', // HTTPS only (production)
      sameSite: 'lax', // CSRF protection
    },
  }),
);

function requireAuth(req, res, next) {
  if (!req.session.userId) {
    return res.redirect('/login?error=login_required');
  }
  next(); // User logged in, proceed
}

app.post('/login', async (req, res) => {
  const { email, password } = req.body;

  // Check credentials
  const {
    rows: [user],
  } = await pool.query('SELECT * FROM users WHERE email = $1', [email]);
  const validPassword = user ? await bcrypt.compare(password, user.password_hash) : false;

  if (validPassword) {
    // Create session (stored in database)
    req.session.userId = user.id;
    req.session.userRole = user.role;

    return res.redirect('/dashboard');
  }
  res.redirect('/login?error=invalid_credentials');
});

app.get('/dashboard', requireAuth, (req, res) => {
  const userId = req.session.userId; // Available on all requests
  res.send(`dashboard of user ${userId} (${req.session.userRole})`);
});

app.get('/logout', (req, res) => {
  req.session.destroy((err) => {
    if (err) {
      console.error('Logout error:', err);
    }
    res.redirect('/?message=Logged out successfully');
  });
});

const server = app.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
