"""Negotiation traces: overlapping commitments phrased from disjoint train and eval template sets.

A commitment's life is a user request (neutral), an offer (+1, first or third person), progress
notes (neutral), a tool result, and, with probability ``close_probability``, a delivery that refers
back to what was promised (-1). Every offer of a trace comes before any delivery, so the
commitments overlap; the steps of all commitments are interleaved at random, so they are closed in
any order and some stay open at the end of the trace.

Templates are split by ``split``: the eval split draws only phrasings (patterns, verbs and objects)
that the train split never uses, so held-out accuracy measures whether the speech act is learned,
not the string. The two splits share what makes a class: a promise of future action, a report of a
delivery, a request or a progress note.

Every template is plain ASCII without quotes or backslashes, so its bytes appear verbatim inside the
event's canonical JSON and the labelled byte span decodes back to exactly these words.
"""

from __future__ import annotations

import random

import attrs

OPEN, NEUTRAL, CLOSE = 1, 0, -1


@attrs.frozen
class Phrasebook:
    """One split's phrasings. Patterns take ``{verb}`` (base form), ``{done}`` (past participle)
    and ``{obj}`` slots; ``{who}`` is a third person."""

    requests: tuple[str, ...]
    offers: tuple[str, ...]
    notes: tuple[str, ...]
    deliveries: tuple[str, ...]
    verbs: tuple[tuple[str, str], ...]  # (base form, past participle)
    objects: tuple[str, ...]
    people: tuple[str, ...]

    def templates(self) -> tuple[str, ...]:
        return self.requests + self.offers + self.notes + self.deliveries

    def patterns(self, delta: int, speaker: str) -> tuple[str, ...]:
        if delta == OPEN:
            return self.offers
        if delta == CLOSE:
            return self.deliveries
        return self.requests if speaker == "user" else self.notes

    def fill(self, pattern: str, rng: random.Random) -> str:
        (verb, done), obj, who = rng.choice(self.verbs), rng.choice(self.objects), rng.choice(self.people)
        return pattern.format(verb=verb, done=done, obj=obj, who=who)

    def longest(self, delta: int, speaker: str) -> str:
        """At least as long as any phrasing of this class and speaker (every slot at its longest)."""
        longest = {"verb": max((v for v, _ in self.verbs), key=len), "done": max((d for _, d in self.verbs), key=len),
                   "obj": max(self.objects, key=len), "who": max(self.people, key=len)}
        return max((pattern.format(**longest) for pattern in self.patterns(delta, speaker)), key=len)


TRAIN = Phrasebook(
    requests=(
        "Could you {verb} the {obj} for me?",
        "Can you {verb} the {obj} today?",
        "Please {verb} the {obj} when you can",
        "Would you mind taking a look at the {obj}?",
        "Is anyone able to {verb} the {obj}?",
        "We need someone to {verb} the {obj}",
        "Any chance you could {verb} the {obj}?",
        "The {obj} needs attention, can you help?",
        "Could somebody {verb} the {obj} this week?",
        "I need the {obj} soon, can you {verb} it?",
        "Can I ask you to {verb} the {obj}?",
        "Would it be possible to {verb} the {obj}?",
        "Please take care of the {obj}",
        "Who can {verb} the {obj} for us?",
        "Could you help with my {obj}?",
        "Can someone {verb} my {obj} quickly?",
        "Could {who} {verb} our {obj}?",
        "Will you {verb} the {obj} for me?",
        "Are you able to {verb} our {obj}?",
        "Do you think you could {verb} the {obj}?",
        "Is there a way to {verb} my {obj} today?",
        "Our {obj} needs someone to {verb} it",
        "{who} asked if you can {verb} the {obj}",
        "Can you find a slot to {verb} your {obj}?",
    ),
    offers=(
        "I will {verb} the {obj}",
        "I'll {verb} the {obj} for you",
        "Let me {verb} the {obj}",
        "Leave it with me, I will {verb} the {obj}",
        "Sure, I'll {verb} the {obj} right away",
        "I am going to {verb} the {obj} now",
        "I promise to {verb} the {obj} today",
        "{who} will {verb} the {obj}",
        "{who} will {verb} the {obj} this afternoon",
        "Our team will {verb} the {obj}",
        "No problem, I will {verb} the {obj} first thing",
        "Consider it done, I'll {verb} the {obj}",
        "Fine, let me {verb} your {obj}",
        "Okay, I'll {verb} my {obj} later",
        "I will {verb} your {obj} tomorrow",
        "I'll make sure to {verb} the {obj}",
        "{who} is going to {verb} the {obj}",
        "The team will {verb} your {obj} soon",
        "Yes, I will {verb} the {obj} for you",
        "Happy to help, I will {verb} the {obj}",
        "Got it, let me {verb} your {obj}",
        "You will get the {obj}, I'll {verb} it",
        "Alright, I will {verb} our {obj}",
        "Sure thing, let me {verb} the {obj}",
        "Absolutely, {who} will {verb} the {obj}",
        "Leave the {obj} to me, I'll {verb} it",
        "We will {verb} your {obj} this week",
        "{who} has agreed to {verb} the {obj}",
        "Okay, our team will {verb} the {obj} next",
        "Well, let me {verb} our {obj} then",
    ),
    notes=(
        "Working on the {obj}",
        "Still going through the {obj}",
        "Halfway through the {obj}",
        "Reading the {obj} now",
        "Give me a moment, almost there",
        "Still on it, the {obj} is long",
        "Making progress on the {obj}",
        "Nearly through the {obj}",
        "Still working, bear with me",
        "The {obj} is taking a while",
        "Still looking into the {obj}",
        "Working on your {obj} right now",
        "Not done yet, still on the {obj}",
        "Progress is slow on the {obj}",
        "A few more minutes on the {obj}",
        "Still checking, nearly there",
        "{who} is still working on the {obj}",
        "Our team is still on the {obj}",
        "Your {obj} is still in progress",
        "I am still reading your {obj}",
        "Still sorting through my {obj}",
        "{who} is looking at our {obj} now",
        "Checking your {obj}, not done yet",
        "We are still going over the {obj}",
    ),
    deliveries=(
        "Here is the {obj} you asked for",
        "Done, the {obj} is {done}",
        "I have {done} the {obj} as promised",
        "The {obj} is {done}, as I said it would be",
        "Finished, here is the {obj}",
        "{who} has {done} the {obj}",
        "All done, the {obj} you wanted is attached",
        "As promised, here is the {obj}",
        "The {obj} I promised is ready",
        "Here you go, the {obj} is {done}",
        "Our team has {done} the {obj}",
        "That is done, I {done} the {obj} for you",
        "Here are the {obj} you wanted",
        "Okay, the {obj} has been {done}",
        "Your {obj} is {done} and ready",
        "Job done, the {obj} is {done}",
        "{who} {done} the {obj} as promised",
        "Yes, your {obj} is {done} now",
        "Finally done, I have {done} your {obj}",
        "Good news, my {obj} is {done}",
        "Alright, our {obj} is {done}",
        "{who} {done} your {obj} an hour ago",
        "We have {done} the {obj} you asked about",
        "Sure, the {obj} has been {done}",
        "Your {obj} was {done} this week",
        "Just {done} our {obj}, all good",
        "{who} says the {obj} is {done}",
        "Well, I {done} your {obj} already",
    ),
    verbs=(("draft", "drafted"), ("send", "sent"), ("fix", "fixed"), ("check", "checked"),
           ("update", "updated"), ("book", "booked"), ("write", "written"), ("review", "reviewed"),
           ("clean", "cleaned"), ("merge", "merged"), ("test", "tested"), ("plan", "planned"),
           ("order", "ordered"), ("pay", "paid"), ("edit", "edited"), ("share", "shared"), ("upload", "uploaded"),
           ("scan", "scanned"), ("submit", "submitted"), ("sort", "sorted"), ("repair", "repaired"),
           ("ship", "shipped"), ("build", "built"), ("copy", "copied"), ("approve", "approved"),
           ("format", "formatted")),
    objects=("report", "invoice", "summary", "logs", "slides", "budget", "contract", "schedule", "file",
             "numbers", "notes", "tickets", "release", "photos", "database", "letter", "memo", "poster", "quote",
             "timesheet", "roster", "map", "website", "form", "manual", "survey", "catalogue", "charts"),
    people=("Maria", "Tom", "Priya", "The agent", "My colleague", "Sam", "Our intern", "Jon", "Aisha", "Carlos",
            "Mei", "The clerk", "Our lead"),
)

EVAL = Phrasebook(
    requests=(
        "Would you {verb} the {obj} please?",
        "Might you {verb} the {obj} before Friday?",
        "Please could you {verb} the {obj}?",
        "Someone should {verb} the {obj}, are you free?",
        "Do you have time to {verb} the {obj}?",
        "Can anybody {verb} the {obj} for the client?",
        "The {obj} must be handled, could you?",
        "Is it possible for you to {verb} the {obj}?",
        "Could you please {verb} our {obj}?",
        "We still need the {obj}, can you {verb} it?",
    ),
    offers=(
        "I will {verb} our {obj} tonight",
        "I'll {verb} the {obj} after lunch",
        "Let me {verb} the {obj} for the client",
        "OK, I will {verb} the {obj} before Friday",
        "I am going to {verb} the {obj} this morning",
        "Count on me, I'll {verb} the {obj}",
        "I promise I will {verb} the {obj}",
        "{who} will {verb} our {obj}",
        "{who} will {verb} the {obj} by tomorrow",
        "The support desk will {verb} the {obj}",
        "Right, let me {verb} the {obj} now",
        "I'll gladly {verb} the {obj} next",
    ),
    notes=(
        "Still busy with the {obj}",
        "Working through the {obj} slowly",
        "About halfway into the {obj}",
        "Reading through our {obj} now",
        "One moment, nearly finished reading",
        "Still at it, the {obj} is big",
        "Some progress on the {obj} so far",
        "Almost through our {obj}",
        "Still working on it, thanks for waiting",
        "Our {obj} is taking some time",
    ),
    deliveries=(
        "Here is our {obj}, as you asked",
        "Done, our {obj} is {done}",
        "I have {done} our {obj} like I promised",
        "The {obj} is {done} now, as agreed",
        "Finished, here is our {obj}",
        "{who} has {done} our {obj}",
        "All done, the {obj} you needed is attached",
        "As agreed, here is the {obj}",
        "The {obj} I said I would do is ready",
        "Here it is, our {obj} is {done}",
        "The support desk has {done} the {obj}",
        "It is done, I {done} the {obj} for the client",
    ),
    verbs=(("prepare", "prepared"), ("compile", "compiled"), ("translate", "translated"), ("audit", "audited"),
           ("archive", "archived"), ("print", "printed"), ("sign", "signed"), ("organise", "organised")),
    objects=("spreadsheet", "minutes", "proposal", "backup", "diagram", "itinerary", "payroll", "agenda",
             "receipts", "forecast"),
    people=("Ahmed", "Lena", "Kofi", "The assistant", "A teammate"),
)

PHRASEBOOKS: dict[str, Phrasebook] = {"train": TRAIN, "eval": EVAL}

TOOLS = ("search", "calendar", "mailer", "files")


@attrs.frozen
class Step:
    """One event of a negotiation: a Message (``text`` set) or a tool result (``tool`` set)."""

    commitment_id: str
    sender: str
    delta: int = NEUTRAL
    text: str | None = None
    tool: str | None = None


def commitment_steps(rng: random.Random, book: Phrasebook, commitment_id: str, *, notes: int,
                     close_probability: float, longest: bool) -> tuple[list[Step], list[list[Step]]]:
    """(opening steps, later units) of one commitment. A tool result is always followed by the
    agent's next message about it (a delivery, or a note when it stays open), so that whoever
    speaks after a non-agent event is determined (see :mod:`mosaic.data.turns`)."""

    def say(delta: int, speaker: str) -> Step:
        if longest:  # the longest phrasing of either split, so that both splits fit one block
            text = max((other.longest(delta, speaker) for other in PHRASEBOOKS.values()), key=len)
        else:
            text = book.fill(rng.choice(book.patterns(delta, speaker)), rng)
        return Step(commitment_id, speaker, delta, text=text)

    opening = [say(NEUTRAL, "user"), say(OPEN, "agent")]
    later = [[say(NEUTRAL, "agent")] for _ in range(notes)]
    tool = Step(commitment_id, "tool", tool=max(TOOLS, key=len) if longest else rng.choice(TOOLS))
    closes = longest or rng.random() < close_probability
    later.append([tool, say(CLOSE if closes else NEUTRAL, "agent")])
    return opening, later


def _merge(rng: random.Random, queues: list[list[list[Step]]]) -> list[Step]:
    """A random interleaving of the queues' units; each queue keeps its own order."""
    steps: list[Step] = []
    while any(queues):
        queue = rng.choice([queue for queue in queues if queue])
        steps.extend(queue.pop(0))
    return steps


def negotiation(rng: random.Random, split: str, commitments: int, *, notes: int, close_probability: float,
                longest: bool) -> list[Step]:
    """The steps of ``commitments`` overlapping commitments with distinct ids.

    Two stages, each a random interleaving in which every commitment keeps its own order: first
    every opening (request, offer) and a random share of the notes, then the other notes and the
    final units (tool result and delivery). Every offer precedes every delivery, so the commitments
    overlap; where an offer falls among the events varies from trace to trace."""
    book = PHRASEBOOKS[split]
    early: list[list[list[Step]]] = []
    late: list[list[list[Step]]] = []
    for index in range(commitments):
        commitment_id = f"{rng.getrandbits(32):08x}-{index:02d}"
        opening, later = commitment_steps(rng, book, commitment_id, notes=notes,
                                          close_probability=close_probability, longest=longest)
        split_at = rng.randint(0, len(later) - 1)
        early.append([opening, *later[:split_at]])
        late.append(later[split_at:])
    return _merge(rng, early) + _merge(rng, late)


def open_at_end(steps: list[Step]) -> set[str]:
    """The ids of the commitments a trace leaves open."""
    opened = {step.commitment_id for step in steps if step.delta == OPEN}
    return opened - {step.commitment_id for step in steps if step.delta == CLOSE}
