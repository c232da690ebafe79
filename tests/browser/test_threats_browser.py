"""Browser: names and chat are text, never markup (docs/security.md, "Threats and their tests").

Debian Chromium against a real `circle serve`. A client whose display name is an HTML and
script payload joins and chats payloads; so does a therapist with a payload name; a second
client watches. In every page (the therapist's waiting list, roster, tiles and chat; the
clients' tiles and chat, and the attacker's own header) the payloads show literally, as
the characters typed: no element is injected, no handler runs (`window.__pwned` stays
undefined), and the page's CSP never had to block anything (no violation, no console error).
"""

from __future__ import annotations

from typing import Any

import pytest

from signaling.core.views import first_name
from tests.integration.server_fixtures import Api, api, server  # noqa: F401

from .browser_fixtures import Browser, Person, chromium, eventually  # noqa: F401
from .test_web_client import join_link, through_device_check

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ATTACKER_NAME = ("<img/src/onerror=window.__pwned=1> <script>window.__pwned=2</script> "
                 "<a href=javascript:window.__pwned=3>x</a>")
"""Peers see the first word only, so that word is a whole payload of its own."""
THERAPIST_NAME = 'Dr<svg/onload=window.__pwned=4> "><img src=x onerror=window.__pwned=5>'
VICTIM_NAME = "Bob Stone"
CHATS = [
    '<img src=x onerror="window.__pwned=6">',
    "<script>window.__pwned=7</script>",
    '<a href="javascript:window.__pwned=8">click me</a>',
    '<iframe srcdoc="<script>parent.__pwned=9</script>"></iframe>',
    '"><svg onload=window.__pwned=10>',
    "<style>*{display:none}</style>&lt;b&gt;entities stay as typed&amp;",
]
THERAPIST_CHAT = "<img src=x onerror=window.__pwned=11> from the therapist"

WATCH_JS = """() => {
  window.__violations = [];
  document.addEventListener('securitypolicyviolation',
    (e) => window.__violations.push(`${e.violatedDirective}: ${e.blockedURI}`));
}"""

INJECTED_JS = """() => {
  const found = [];
  for (const el of document.querySelectorAll('*')) {
    for (const a of el.attributes) {
      const name = a.name.toLowerCase();
      if (name.startsWith('on')) found.push(`${el.tagName} ${name}`);
      if (name === 'srcdoc') found.push(`${el.tagName} srcdoc`);
      if (['href', 'src', 'action', 'formaction', 'xlink:href'].includes(name)
          && /^\\s*javascript:/i.test(a.value)) found.push(`${el.tagName} ${name}=javascript:`);
    }
  }
  for (const el of document.querySelectorAll(
      'iframe, object, embed, script:not([src]), img, svg animate, svg set, #app style')) {
    found.push(el.tagName);
  }
  const texts = '.name *, .chat-log .text *, .chat-log .from *, .who *';
  for (const el of document.querySelectorAll(texts)) {
    found.push(`inside text: ${el.tagName}`);
  }
  return {found, pwned: window.__pwned === undefined ? null : String(window.__pwned),
          violations: window.__violations ?? ['no watcher']};
}"""

TEXTS_JS = "(selector) => [...document.querySelectorAll(selector)].map((e) => e.textContent)"


async def texts(person: Person, selector: str) -> list[str]:
    return list(await person.page.evaluate(TEXTS_JS, selector))


async def nothing_injected(person: Person) -> None:
    report: dict[str, Any] = await person.page.evaluate(INJECTED_JS)
    assert report == {"found": [], "pwned": None, "violations": []}, (person.name, report)


async def open_watched(chromium: Browser, name: str, url: str) -> Person:  # noqa: F811
    person = await chromium.open(name, url)
    await person.page.evaluate(WATCH_JS)  # before any name or chat reaches the page
    return person


async def shows(person: Person, selector: str, wanted: str, what: str) -> None:
    async def check() -> bool:
        return wanted in await texts(person, selector)

    await eventually(check, 15, f"{person.name} shows {what} literally")


async def test_names_and_chat_with_markup_render_as_text_for_clients_and_therapist(
    api: Api, chromium: Browser  # noqa: F811
) -> None:
    sid = await api.create_session(title="Thursday process group")
    attacker = await open_watched(chromium, "attacker",
                                  await join_link(api, sid, "c1", ATTACKER_NAME))
    await through_device_check(attacker, audio_only=True)
    await attacker.page.get_by_role("heading", name="You are in the waiting room").wait_for()
    therapist = await open_watched(
        chromium, "therapist", await join_link(api, sid, "t1", THERAPIST_NAME, "therapist"))
    await through_device_check(therapist, audio_only=True)
    tp = therapist.page

    # The therapist's waiting list: the full name, as text.
    await shows(therapist, ".waiting-row .name", ATTACKER_NAME, "the waiting client's name")
    await nothing_injected(therapist)
    await tp.get_by_role("button", name=f"Admit {ATTACKER_NAME}", exact=True).click()
    await attacker.page.get_by_role("toolbar", name="Your controls").wait_for()

    victim = await open_watched(chromium, "victim", await join_link(api, sid, "c2", VICTIM_NAME))
    await through_device_check(victim, audio_only=True)
    await tp.get_by_role("button", name=f"Admit {VICTIM_NAME}", exact=True).click()
    await victim.page.get_by_role("toolbar", name="Your controls").wait_for()

    ap = attacker.page
    for text in CHATS:
        await ap.get_by_label("Message to the room").fill(text)
        await ap.get_by_role("button", name="Send", exact=True).click()
        await shows(attacker, ".chat-log li .text", text, "its own chat line")
    await tp.get_by_label("Message to the room").fill(THERAPIST_CHAT)
    await tp.get_by_role("button", name="Send", exact=True).click()

    everyone_said = [*CHATS, THERAPIST_CHAT]
    for person in (therapist, attacker, victim):
        async def all_lines(person: Person = person) -> bool:
            return await texts(person, ".chat-log li .text") == everyone_said

        await eventually(all_lines, 15, f"{person.name} has every chat line, as typed")

    # The therapist: full names in the roster, on the tile and in the chat.
    await shows(therapist, ".person-row .name", ATTACKER_NAME, "the roster name")
    await shows(therapist, "figure .name", ATTACKER_NAME, "the tile name")
    assert await texts(therapist, ".chat-log li .from") == [ATTACKER_NAME] * len(CHATS) + [
        "You"]
    # Clients: the first word of a peer's name, on the tile and in the chat.
    await shows(victim, "figure .name", first_name(ATTACKER_NAME), "the attacker's tile")
    await shows(victim, "figure .name", first_name(THERAPIST_NAME), "the therapist's tile")
    assert await texts(victim, ".chat-log li .from") == [first_name(ATTACKER_NAME)] * len(
        CHATS) + [first_name(THERAPIST_NAME)]
    await shows(attacker, "figure .name", first_name(THERAPIST_NAME), "the therapist's tile")
    assert await texts(attacker, ".chat-log li .from") == ["You"] * len(CHATS) + [
        first_name(THERAPIST_NAME)]
    # The attacker's own header carries its full name.
    assert any(ATTACKER_NAME in t for t in await texts(attacker, ".who")), await texts(
        attacker, ".who")

    for person in (therapist, attacker, victim):
        await nothing_injected(person)
    errors = chromium.console_errors()
    assert errors == {}, errors
