"""Developer tool: regenerate the demo's sample event stream (bot/demo/events.jsonl.gz).

    python tools/make_demo_data.py

Deterministic (fixed seed). Timestamps are stored as seconds before the end of the stream; the
demo shifts them so the stream ends at the moment it runs. The stream is a product-led SaaS in
miniature: teams that invite and connect integrations, quiet buyers who open billing, dormant
sign-ups, explorers, and people with no account at all.
"""

from __future__ import annotations

import gzip
import json
import random
import uuid
from pathlib import Path
from typing import Any

DAY = 86400
SPAN_DAYS = 42
OUT = Path(__file__).resolve().parents[1] / "bot" / "demo" / "events.jsonl.gz"

FIRST = [
    "Ada",
    "Grace",
    "Alan",
    "Katherine",
    "Linus",
    "Margaret",
    "Dennis",
    "Barbara",
    "Ken",
    "Radia",
    "Tim",
    "Frances",
    "Edsger",
    "Hedy",
    "John",
    "Sophie",
    "Guido",
    "Anita",
    "Bjarne",
    "Shafi",
    "Donald",
    "Joan",
    "Vint",
    "Annie",
    "Niklaus",
    "Mary",
    "Whitfield",
    "Evelyn",
    "Leslie",
    "Karen",
    "Ivan",
    "Lynn",
    "Yukihiro",
    "Adele",
    "Brian",
    "Jean",
    "Larry",
    "Carol",
    "James",
    "Ruth",
    "Omar",
    "Priya",
    "Mei",
    "Kwame",
    "Lucia",
    "Tariq",
    "Ines",
    "Hiro",
    "Zanele",
    "Mateo",
]
LAST = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Johnson",
    "Torvalds",
    "Hamilton",
    "Ritchie",
    "Liskov",
    "Thompson",
    "Perlman",
    "Berners-Lee",
    "Allen",
    "Dijkstra",
    "Lamarr",
    "McCarthy",
    "Wilson",
    "van Rossum",
    "Borg",
    "Stroustrup",
    "Goldwasser",
    "Knuth",
    "Clarke",
    "Cerf",
    "Easley",
    "Wirth",
    "Keller",
    "Diffie",
    "Boyd",
    "Lamport",
    "Jones",
    "Sutherland",
    "Conway",
    "Matsumoto",
    "Goldberg",
    "Kernighan",
    "Sammet",
    "Page",
    "Shaw",
    "Gosling",
    "Teitelbaum",
    "Haddad",
    "Raman",
    "Chen",
    "Mensah",
    "Ortega",
    "Aziz",
    "Moreau",
    "Tanaka",
    "Dlamini",
    "Rossi",
]
COMPANIES = [
    "Northwind Traders",
    "Contoso",
    "Fabrikam",
    "Tailspin Toys",
    "Wide World Importers",
    "Adventure Works",
    "Litware",
    "Proseware",
    "Lucerne Publishing",
    "Margie's Travel",
    "Alpine Ski House",
    "Blue Yonder Air",
    "Coho Winery",
    "Fourth Coffee",
    "Graphic Design Institute",
    "Humongous Insurance",
    "Relecloud",
    "Southridge Video",
    "Trey Research",
    "VanArsdel",
    "Woodgrove Bank",
    "Wingtip Toys",
    "Datum Corp",
    "Consolidated Messenger",
    "City Power & Light",
    "Bellows College",
    "Best For You Organics",
    "First Up Consultants",
    "Nod Publishers",
    "School of Fine Art",
    "Olympia Robotics",
    "Kestrel Labs",
    "Juniper Freight",
    "Basalt Analytics",
    "Quillwork",
    "Harbor & Pine",
    "Meridian Health",
    "Lumen Studio",
    "Orchid Biotech",
    "Sable Systems",
    "Tidewater Legal",
    "Copperline Energy",
]
INTEGRATIONS = ["slack", "github", "jira", "salesforce", "hubspot", "google-drive", "zapier", "linear"]
FEATURES = ["dashboard", "report", "automation", "query"]
BUYER_TITLES = ["Head of Operations", "VP Engineering", "Founder & CEO", "Finance Director", "Workspace Owner"]
OTHER_TITLES = [
    "Software Engineer",
    "Data Analyst",
    "Product Manager",
    "Designer",
    "Support Lead",
    "Marketing Ops",
    "Engineering Manager",
    None,
    None,
]
FREE_MAIL = ["gmail.example", "fastmail.example", "proton.example", "outlook.example"]


class Stream:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.messages: list[dict[str, Any]] = []

    def add(self, msg: dict[str, Any], at: float) -> None:
        msg["messageId"] = str(uuid.UUID(int=self.rng.getrandbits(128)))
        msg["_ago"] = round(max(0.0, at), 3)
        self.messages.append(msg)

    def identify(self, user: str, traits: dict[str, Any], at: float) -> None:
        self.add({"type": "identify", "userId": user, "traits": traits}, at)

    def group(self, user: str, account: str, traits: dict[str, Any], at: float) -> None:
        self.add({"type": "group", "userId": user, "groupId": account, "traits": traits}, at)

    def track(self, user: str, event: str, props: dict[str, Any], at: float, account: str | None = None) -> None:
        msg: dict[str, Any] = {"type": "track", "userId": user, "event": event, "properties": props}
        if account:
            msg["context"] = {"groupId": account}
        self.add(msg, at)

    def page(self, user: str, name: str, path: str, at: float) -> None:
        self.add({"type": "page", "userId": user, "name": name, "properties": {"path": path}}, at)

    def anonymous(self, anonymous_id: str, kind: str, at: float, **fields: Any) -> None:
        self.add({"type": kind, "anonymousId": anonymous_id, **fields}, at)


def slug(name: str) -> str:
    return "".join(c.lower() if c.isalnum() else "-" for c in name).strip("-").replace("--", "-")


def person(rng: random.Random, used: set[str]) -> tuple[str, str]:
    while True:
        first, last = rng.choice(FIRST), rng.choice(LAST)
        if (first, last) not in used:
            used.add((first, last))  # type: ignore[arg-type]
            return first, last


def main() -> None:
    rng = random.Random(20261203)
    buys = random.Random(20261204)  # who becomes a customer (a stream of its own: the rest stays put)
    s = Stream(rng)
    used: set[str] = set()
    plans = ["free", "free", "free", "trial"]
    archetypes = ["champions"] * 9 + ["quiet_buyer"] * 6 + ["dormant"] * 9 + ["explorers"] * 12 + ["almost"] * 6
    rng.shuffle(archetypes)
    uid = 0
    for idx, company in enumerate(COMPANIES):
        kind = archetypes[idx]
        account = f"acct-{slug(company)}"
        domain = f"{slug(company).replace('-', '')}.example"
        size = rng.randint(2, 4) if kind == "dormant" else rng.randint(3, 14)
        start = rng.uniform(20, SPAN_DAYS) * DAY
        members = []
        for m in range(size):
            uid += 1
            first, last = person(rng, used)
            title = (
                rng.choice(BUYER_TITLES)
                if m == 1 and kind in ("quiet_buyer", "champions")
                else rng.choice(OTHER_TITLES)
            )
            user = f"u{uid:04d}"
            joined = start - rng.uniform(0, min(start - DAY, 10 * DAY)) if m else start
            traits = {"email": f"{first.lower()}.{slug(last)}@{domain}", "name": f"{first} {last}"}
            if title:
                traits["title"] = title
            s.identify(user, traits, joined)
            s.group(
                user, account, {"name": company, "plan": rng.choice(plans), "domain": domain, "seats": size}, joined - 1
            )
            members.append((user, joined))
        activity_end = start - rng.uniform(17, 25) * DAY if kind == "dormant" else 0.0
        for n, (user, joined) in enumerate(members):
            champion = n == 0
            busy = {
                "champions": 0.9 if champion else 0.5,
                "quiet_buyer": 0.35,
                "dormant": 0.15,
                "explorers": 0.3,
                "almost": 0.45,
            }[kind]
            days = max(1, int((joined - activity_end) / DAY))
            for d in range(days):
                if rng.random() > busy:
                    continue
                day_at = joined - d * DAY - rng.uniform(0, DAY * 0.9)
                if day_at < activity_end:
                    break
                for _ in range(rng.randint(1, 4 if champion else 2)):
                    at = day_at - rng.uniform(0, 8 * 3600)
                    roll = rng.random()
                    if roll < 0.45:
                        s.track(user, "Core Feature Used", {"feature": rng.choice(FEATURES)}, at, account)
                    elif roll < 0.6:
                        s.page(
                            user,
                            rng.choice(["Dashboard", "Settings", "Docs", "Templates"]),
                            rng.choice(["/app", "/app/settings", "/docs", "/templates"]),
                            at,
                        )
                    elif roll < 0.7 and kind in ("champions", "almost", "explorers"):
                        s.track(user, "Project Created", {"project_id": f"p{rng.getrandbits(24)}"}, at, account)
                    else:
                        s.track(
                            user, rng.choice(["Report Exported", "Dashboard Viewed", "Comment Added"]), {}, at, account
                        )
        lead_user = members[0][0]
        if kind == "champions":
            invitees = rng.sample(range(1000), rng.randint(2, 4))
            for i in invitees:
                s.track(
                    rng.choice(members)[0],
                    "Invite Sent",
                    {"invitee_email": f"teammate{i}@{domain}"},
                    rng.uniform(1, 15) * DAY,
                    account,
                )
            for integ in rng.sample(INTEGRATIONS, rng.randint(1, 3)):
                s.track(
                    rng.choice(members)[0],
                    "Integration Activated",
                    {"integration": integ},
                    rng.uniform(0.5, 12) * DAY,
                    account,
                )
        elif kind == "almost":
            s.track(
                lead_user, "Invite Sent", {"invitee_email": f"colleague@{domain}"}, rng.uniform(2, 20) * DAY, account
            )
            s.track(
                lead_user,
                "Integration Activated",
                {"integration": rng.choice(INTEGRATIONS)},
                rng.uniform(2, 20) * DAY,
                account,
            )
        elif kind == "quiet_buyer":
            buyer = members[1][0] if len(members) > 1 else lead_user
            s.track(
                lead_user,
                "Integration Activated",
                {"integration": rng.choice(INTEGRATIONS)},
                rng.uniform(5, 20) * DAY,
                account,
            )
            s.page(buyer, "Pricing", "/pricing", rng.uniform(0.3, 0.7) * DAY)
            billing = rng.uniform(0.05, 0.3) * DAY
            s.page(buyer, "Billing", "/billing/plans", billing)
            if buys.random() < 0.35:  # some buy right away, before sales even calls
                s.track(buyer, "Subscription Started", {"plan": "team"}, billing - 0.02 * DAY, account)
        # Conversions, most often where the team adopted the product: teams that crossed the
        # threshold days ago buy in the last hours of the stream.
        chance = {"champions": 0.6, "almost": 0.2, "explorers": 0.1, "dormant": 0.0, "quiet_buyer": 0.0}[kind]
        if buys.random() < chance:
            payer = members[1][0] if len(members) > 1 else lead_user
            s.track(payer, "Subscription Started", {"plan": "team"}, buys.uniform(0.05, 0.45) * DAY, account)
    # Visitors who try the product before signing up, then sign up (identify links the ids):
    # their anonymous history joins them; two read pricing first, which raises their hand.
    for n in range(6):
        uid += 1
        first, last = person(rng, used)
        user, anon = f"u{uid:04d}", f"anon-{rng.getrandbits(48):012x}"
        signup = rng.uniform(0.1, 0.8) * DAY if n < 2 else rng.uniform(3, 12) * DAY
        visited = signup + rng.uniform(0.05, 0.5) * DAY
        s.anonymous(
            anon,
            "page",
            visited,
            name="Pricing" if n < 2 else "Docs",
            properties={"path": "/pricing" if n < 2 else "/docs"},
        )
        for k in range(3):
            s.anonymous(
                anon,
                "track",
                visited - (k + 1) * 600,
                event="Project Created",
                properties={"project_id": f"p{rng.getrandbits(24)}"},
            )
        s.add(
            {
                "type": "identify",
                "userId": user,
                "anonymousId": anon,
                "traits": {
                    "email": f"{first.lower()}.{slug(last)}@{rng.choice(FREE_MAIL)}",
                    "name": f"{first} {last}",
                    "title": "Founder",
                },
            },
            signup,
        )
        s.track(user, "Core Feature Used", {"feature": "dashboard"}, signup - 300)
    # People with no account: freelancers, evaluators, and a few who never came back.
    for _ in range(70):
        uid += 1
        first, last = person(rng, used)
        user = f"u{uid:04d}"
        joined = rng.uniform(1, SPAN_DAYS) * DAY
        s.identify(
            user,
            {"email": f"{first.lower()}{rng.randint(1, 99)}@{rng.choice(FREE_MAIL)}", "name": f"{first} {last}"},
            joined,
        )
        style = rng.random()
        end = joined - rng.uniform(1, 3) * DAY if style < 0.4 else 0.0
        t = joined
        while t > end:
            t -= rng.uniform(0.2, 2.5) * DAY
            if t < 0:
                break
            s.track(user, "Core Feature Used" if rng.random() < 0.6 else "Dashboard Viewed", {}, t)
        if style > 0.9:
            for i in range(2):
                s.track(
                    user,
                    "Invite Sent",
                    {"invitee_email": f"friend{i}@{rng.choice(FREE_MAIL)}"},
                    rng.uniform(1, 5) * DAY,
                )
            s.track(user, "Integration Activated", {"integration": rng.choice(INTEGRATIONS)}, rng.uniform(1, 5) * DAY)
            if buys.random() < 0.5:
                s.track(user, "Subscription Started", {"plan": "pro"}, buys.uniform(0.05, 0.5) * DAY)
        elif 0.85 < style <= 0.9:
            s.track(user, "Upgrade Page Viewed", {"plan": "pro"}, rng.uniform(0.02, 0.5) * DAY)
    s.messages.sort(key=lambda m: -m["_ago"])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(OUT, "wt", encoding="utf-8") as fh:
        for msg in s.messages:
            fh.write(json.dumps(msg, separators=(",", ":")) + "\n")
    kinds: dict[str, int] = {}
    for m in s.messages:
        kinds[m["type"]] = kinds.get(m["type"], 0) + 1
    print(f"wrote {OUT.name}: {len(s.messages)} messages, {uid} users, {len(COMPANIES)} accounts; {kinds}")


if __name__ == "__main__":
    main()
