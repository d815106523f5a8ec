// Entry point: finds out whether this browser holds a key store (so the
// first screen is "unlock" or "create"), then mounts the app.
import { render } from 'preact';
import { App } from './app';
import { hasSealed } from './keystore';

const root = document.getElementById('app');
if (root) {
  hasSealed()
    .catch(() => false)
    .then((hasStore) => {
      root.textContent = '';
      render(<App hasStore={hasStore} />, root);
    });
}
