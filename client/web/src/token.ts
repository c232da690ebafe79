// The join token lives in sessionStorage, not in the address bar.

const KEY = "circle.token";

/** Take the token from `?token=` (once) or from this tab's sessionStorage. */
export function readToken(): string {
  const params = new URLSearchParams(location.search);
  const fromUrl = params.get("token");
  if (fromUrl) {
    sessionStorage.setItem(KEY, fromUrl);
    // Keep the token out of the address bar, history and screenshots.
    history.replaceState(null, "", location.pathname);
    return fromUrl;
  }
  return sessionStorage.getItem(KEY) ?? "";
}

/** The session is over for this person (ended, left, signed out): the link must be opened again. */
export function forgetToken(): void {
  sessionStorage.removeItem(KEY);
}
