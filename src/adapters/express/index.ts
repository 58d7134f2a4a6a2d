export { type SessionMiddleware, type SessionOptions, session } from './middleware.js';
