"""The config's directory: who answers and how callers reach them (hotline numbers'
owners, operator desks' extensions, the agencies, the panic buttons, the trunk, the IVR).

A mixin of :class:`dispatcher.config.loader.CenterParser`; every number is claimed once
across sections, and a bad value raises :class:`~dispatcher.yamlnodes.ConfigError` naming the
file, the line and the key.
"""

from __future__ import annotations

from dispatcher.config.model import (
    AGENCY_KINDS,
    EXTENSION_RE,
    IVR_PROMPTS,
    LANGUAGE_KEYS,
    LANGUAGE_RE,
    NUMBER_RE,
    Agency,
    Button,
    Ivr,
    Trunk,
)
from dispatcher.yamlnodes import Section, Value


class DirectorySections:
    """Parsers of the numbers, desks, agencies, buttons, trunk and IVR."""

    # extension -> description of its owner, for duplicate detection across sections
    owners: dict[str, str]

    def claim(self, number: str, owner: str, v: Value) -> None:
        if number in self.owners:
            raise v.error(f"{number} is already {self.owners[number]}")
        self.owners[number] = owner

    def extension(self, v: Value) -> str:
        raw = v.scalar()
        s = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
        if not isinstance(s, str) or not EXTENSION_RE.match(s):
            raise v.error(f"must be an extension of 2 to 8 digits, got {raw!r}")
        return s

    def ivr(self, sec: Section) -> Ivr:
        default = sec.text("default_language", "id")
        langs_v = sec.get("languages")
        languages = ["id", "en"] if langs_v.missing else []
        if not langs_v.missing:
            for item in langs_v.items():
                lang = item.scalar()
                if not isinstance(lang, str) or not LANGUAGE_RE.match(lang):
                    raise item.error(f"must be a two-letter language code, got {lang!r}")
                languages.append(lang)
        if len(languages) > len(LANGUAGE_KEYS):
            raise langs_v.error(f"at most {len(LANGUAGE_KEYS)} languages")
        if default not in languages:
            raise sec.get("default_language").error(
                f"{default!r} is not among languages {languages}")
        texts: dict[str, dict[str, str]] = {}
        texts_v = sec.get("texts")
        if not texts_v.missing:
            by_lang = Section(texts_v, set(languages))
            for lang in languages:
                lv = by_lang.get(lang)
                if lv.missing:
                    continue
                prompt_sec = Section(lv, set(IVR_PROMPTS))
                texts[lang] = {k: prompt_sec.text(k, max_len=600)
                               for k in IVR_PROMPTS if k in prompt_sec.children}
        return Ivr(
            default_language=default, languages=tuple(languages),
            digit_timeout=sec.integer("digit_timeout", 3, lo=1, hi=10),
            max_seconds=sec.integer("max_seconds", 10, lo=3, hi=30),
            texts=texts,
        )

    def trunk(self, sec: Section) -> Trunk | None:
        if sec.value.missing:
            return None
        return Trunk(
            host=sec.text("host"), port=sec.integer("port", 5060, lo=1, hi=65535),
            username=sec.text("username") if "username" in sec.children else None,
            password=sec.text("password") if "password" in sec.children else None,
        )

    def agencies(self, v: Value, trunk: Trunk | None) -> tuple[Agency, ...]:
        if v.missing:
            raise v.error(f"is required: the six agencies {', '.join(AGENCY_KINDS)}")
        agencies: list[Agency] = []
        digits: dict[int, str] = {}
        fallbacks: list[tuple[str, str, Value]] = []
        for item in v.items():
            sec = Section(item, {"key", "name", "digit", "extensions", "fallback",
                                 "ring_seconds", "priority"})
            key_v = sec.get("key")
            key = sec.text("key")
            if key not in AGENCY_KINDS:
                raise key_v.error(f"must be one of {', '.join(AGENCY_KINDS)}, got {key!r}")
            if any(a.key == key for a in agencies):
                raise key_v.error(f"agency {key} is configured twice")
            digit = sec.integer("digit", lo=1, hi=9)
            if digit in digits:
                raise sec.get("digit").error(f"{digit} is already agency {digits[digit]}")
            digits[digit] = key
            exts_v = sec.get("extensions")
            if exts_v.missing:
                raise exts_v.error("is required: the agency's phones")
            exts: list[str] = []
            for ev in exts_v.items():
                ext = self.extension(ev)
                self.claim(ext, f"agency {key} extension {ext}", ev)
                exts.append(ext)
            if not 1 <= len(exts) <= 10:
                raise exts_v.error("must list 1 to 10 extensions")
            fb_v = sec.get("fallback")
            if fb_v.missing:
                raise fb_v.error("is required: where the call goes when nobody answers")
            fallback = sec.text("fallback")
            if not NUMBER_RE.match(fallback):
                raise fb_v.error(f"must be a phone number or extension, got {fallback!r}")
            fallbacks.append((fallback, key, fb_v))
            agencies.append(Agency(
                key=key, name=sec.text("name", key.replace("_", " ").title()), digit=digit,
                extensions=tuple(exts), fallback=fallback,
                ring_seconds=sec.integer("ring_seconds", 20, lo=5, hi=120),
                priority=sec.integer("priority", 5, lo=1, hi=10),
            ))
        missing = [k for k in AGENCY_KINDS if not any(a.key == k for a in agencies)]
        if missing:
            raise v.error(f"missing agencies: {', '.join(missing)}")
        # A fallback is a supervisor's phone, a phone of its own (an extension: it gets an
        # account), or an outside number dialled through the trunk. It must not be an
        # operator, a hotline number or another agency's phone.
        for number, key, fb_v in fallbacks:
            owner = self.owners.get(number)
            if owner is not None:
                if not owner.startswith("supervisor"):
                    raise fb_v.error(f"{number} is already {owner}")
            elif EXTENSION_RE.match(number):
                self.owners[number] = f"agency {key} fallback {number}"
            elif trunk is None:
                raise fb_v.error(f"{number} needs a trunk to be dialled; none is configured")
        return tuple(agencies)

    def buttons(self, v: Value) -> tuple[Button, ...]:
        if v.missing:
            return ()
        out: list[Button] = []
        for item in v.items():
            sec = Section(item, {"extension", "name", "lat", "lon"})
            ext_v = sec.get("extension")
            if ext_v.missing:
                raise ext_v.error("is required")
            ext = self.extension(ext_v)
            self.claim(ext, f"button {ext}", ext_v)
            out.append(Button(ext, sec.text("name", f"Button {ext}"),
                              sec.number("lat", lo=-90, hi=90),
                              sec.number("lon", lo=-180, hi=180)))
        return tuple(out)
