/**
 * Why the middleware switches Express's `req` and `res` to dictionary properties.
 *
 * Express gives every request and response its app's prototype (`Object.setPrototypeOf(req,
 * app.request)`). V8 (Node 20's) does not share the hidden class of an object whose prototype was
 * set that way with any other object: each property added to it afterwards creates a new hidden
 * class and copies the object's whole property layout (some 30 entries) into it, and every
 * inline cache that sees these objects turns megamorphic. Express itself adds half a dozen
 * properties per request after that point (`res.locals`, `req.params`, `req.baseUrl`…), and a
 * session layer three to seven more (`req.session`, `req.sessionID`, `req.sessionStore`, the
 * response hooks): those additions, not the session work, were most of what sessions cost an
 * Express request.
 *
 * An object in dictionary mode keeps its properties in a hash table: an addition is one insert,
 * and property reads through megamorphic caches cost about what they cost before. Deleting an own
 * property other than the last one added is how JavaScript asks V8 for that switch; the property
 * is put back at once with the same value, so nothing but its position in `Object.keys` changes.
 *
 * Objects that kept their class's prototype (plain `node:http`, Connect, Fastify's raw request)
 * share hidden classes with every other request, which is faster than any dictionary: they are
 * left alone.
 */

/**
 * Put `target` in dictionary mode if its prototype is not `classPrototype` (it was replaced, as
 * Express does), by deleting and re-adding its own data property `key`. Does nothing if `key` is
 * not a plain own data property (configurable, writable, enumerable).
 */
export function toDictionaryMode(target: object, classPrototype: object, key: string): void {
  if (Object.getPrototypeOf(target) === classPrototype) return;
  const own = Object.getOwnPropertyDescriptor(target, key);
  if (!own?.configurable || !own.writable || !own.enumerable || !('value' in own)) return;
  if (!Reflect.deleteProperty(target, key)) return;
  (target as Record<string, unknown>)[key] = own.value;
}
