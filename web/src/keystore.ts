// The one thing this app keeps at rest: the key store, sealed by the Rust
// core (Argon2id + XChaCha20-Poly1305, the CLI's envelope), in IndexedDB.
// No message, friend list or key in the clear is ever written anywhere.

const DB = 'wisp';
const STORE = 'keystore';
const KEY = 'sealed';

function open(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error ?? new Error('IndexedDB unavailable'));
  });
}

async function run<T>(mode: IDBTransactionMode, action: (store: IDBObjectStore) => IDBRequest): Promise<T> {
  const db = await open();
  try {
    return await new Promise<T>((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const request = action(tx.objectStore(STORE));
      // Durable before the frames that depend on it leave: wait for the commit.
      tx.oncomplete = () => resolve(request.result as T);
      tx.onerror = () => reject(tx.error ?? new Error('IndexedDB write failed'));
      tx.onabort = () => reject(tx.error ?? new Error('IndexedDB write aborted'));
    });
  } finally {
    db.close();
  }
}

/** The sealed key store, if there is one. */
export async function loadSealed(): Promise<Uint8Array | undefined> {
  const value = await run<unknown>('readonly', (s) => s.get(KEY));
  return value instanceof Uint8Array ? value : undefined;
}

/** Replaces the sealed key store (resolves once committed). */
export async function saveSealed(sealed: Uint8Array): Promise<void> {
  await run<unknown>('readwrite', (s) => s.put(sealed, KEY));
}

/** Whether a key store exists. */
export async function hasSealed(): Promise<boolean> {
  return (await run<number>('readonly', (s) => s.count(KEY))) > 0;
}

/** Deletes the key store (after the account was deleted). */
export async function deleteSealed(): Promise<void> {
  await run<unknown>('readwrite', (s) => s.delete(KEY));
}
