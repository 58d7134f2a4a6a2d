'use client';
import { useActionState } from 'react';
import { login } from '../actions';

export default function LoginPage() {
  const [error, action, pending] = useActionState(login, null);
  return (
    <form action={action}>
      <input name="email" type="email" placeholder="Email" required />
      <input name="password" type="password" placeholder="Password" required />
      <button type="submit" disabled={pending}>
        Log in
      </button>
      {error && <p role="alert">{error}</p>}
    </form>
  );
}
