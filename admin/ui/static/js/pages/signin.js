// Sign-in: the admin token is checked against the API and kept in sessionStorage only.
import { api, ApiError, setToken, takeSigninMessage } from '../api.js';
import { field, h, replace } from '../dom.js';
import { errorText } from '../ui.js';

/** The sign-in page (`#/signin`), with the message a refused token left. @param {import('../main.js').PageContext} ctx */
export function renderSignin({ main }) {
  const left = takeSigninMessage();
  const message = h('p', { class: left ? 'form-error' : 'hint', id: 'signin-message', role: 'alert' }, left ?? 'Use PORTICO_ADMIN_TOKEN, the token in $PORTICO_DATA_DIR/admin-token, or one made with POST /api/v1/tokens.');
  const token = h('input', { type: 'password', name: 'token', id: 'token', autocomplete: 'off', required: true, spellcheck: 'false' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', {
    class: 'card narrow',
    onsubmit: async (/** @type {SubmitEvent} */ e) => {
      e.preventDefault();
      const value = token.value.trim();
      if (!/^[A-Za-z0-9._~+/=-]+$/.test(value)) {
        replace(message, 'That is not a token (letters, digits and ._~+/=- only).');
        message.className = 'form-error';
        return;
      }
      submit.disabled = true;
      try {
        // Checked with the token passed explicitly, so a refused one never lands in storage.
        await api('GET', '/targets', undefined, { token: value });
        setToken(value);
        window.dispatchEvent(new HashChangeEvent('hashchange'));
      } catch (err) {
        message.className = 'form-error';
        replace(message, err instanceof ApiError && err.status === 401 ? 'That token was refused.' : errorText(err));
        token.select();
      } finally {
        submit.disabled = false;
      }
    },
  },
  h('h1', null, 'Sign in'),
  field('Admin token', token),
  message,
  h('div', { class: 'actions' }, submit));
  replace(main, form);
  token.focus();
}
