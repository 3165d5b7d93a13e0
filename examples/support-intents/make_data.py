"""Generate the support-intents demo dataset (``data.csv`` and ``unlabeled.csv`` next to this file).

Deterministic (seeded) and stdlib-only. Run with::

    python examples/support-intents/make_data.py

Each row is a synthetic customer-support message labelled with one of five intents:
billing, technical_issue, account_access, shipping, cancellation.

The data is built to be *semantic* rather than keyword-trivial:

* every intent has many core phrasings that share few words with each other;
* surface vocabulary ("account", "order", "charge", "app", ...) is deliberately
  spread across several intents, and a shared pool of openers, context sentences,
  details and closers is drawn independently of the label;
* about 5% of rows are genuinely ambiguous but labelled with their primary intent
  (e.g. "I cancelled last month but you still charged me" is billing).

There is no random label noise. Exact duplicates (ignoring case and punctuation)
are removed. ``unlabeled.csv`` holds more messages of the same kind without labels (a
different seed, none repeating ``data.csv``): the demo's label stage labels them.
"""

from __future__ import annotations

import csv
import random
import re
from pathlib import Path

SEED = 20240611
OUT = Path(__file__).resolve().parent / "data.csv"
UNLABELED = OUT.with_name("unlabeled.csv")
UNLABELED_PER_CLASS = 10

# Target number of rows per label (mildly imbalanced on purpose).
TARGETS = {
    "billing": 158,
    "technical_issue": 152,
    "account_access": 146,
    "shipping": 142,
    "cancellation": 104,
}

AMBIGUOUS_RATE = 0.055

# --------------------------------------------------------------------------------------
# Slot values
# --------------------------------------------------------------------------------------

GADGETS = [
    "the Nimbus Pro",
    "the AeroBuds 2",
    "the SmartHub X2",
    "the PixelFrame",
    "the Orbit speaker",
    "the StreamLine TV box",
    "the FitBand 3",
    "the router",
    "the Nimbus Mini",
]
PLANS = [
    "the Plus plan",
    "the Premium membership",
    "the family bundle",
    "the Lite plan",
    "the Team workspace plan",
    "the Pro subscription",
    "the annual plan",
]
PRODUCTS = GADGETS + PLANS
REFILLS = ["coffee pods", "the razor refills", "the snack box", "vitamins", "filters"]
DEVICES = ["iPhone", "Android phone", "iPad", "Windows laptop", "MacBook", "Chromebook", "TV"]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
COUNTRIES = ["Canada", "Germany", "Australia", "Ireland", "Mexico", "Japan", "Norway"]
NAMES = ["Maria", "Tom", "Priya", "Daniel", "Chen", "Fatima", "Lucas", "Sarah", "Olu", "Ana"]
CODES = ["SPRING20", "WELCOME10", "FREESHIP", "VIP15", "SAVE5NOW", "BF2024"]
ERRORS = ["E-401", "0x80070005", "ERR_502", "code 17", "E1032", "NET-TIMEOUT", "500"]


def _amount(rng: random.Random) -> str:
    style = rng.random()
    if style < 0.55:
        return f"${rng.choice([9, 12, 14, 19, 24, 29, 39, 49, 59, 79, 99, 129, 249])}.99"
    if style < 0.8:
        return f"${rng.randint(5, 400)}"
    if style < 0.9:
        return f"{rng.randint(5, 300)} euros"
    return f"GBP {rng.randint(5, 200)}.{rng.randint(0, 99):02d}"


def _order(rng: random.Random) -> str:
    style = rng.random()
    if style < 0.4:
        return f"#{rng.randint(100000, 999999)}"
    if style < 0.7:
        return f"{rng.choice(['A', 'B', 'LM', 'ORD-'])}{rng.randint(10000, 99999)}"
    return str(rng.randint(1000000, 9999999))


def _date(rng: random.Random) -> str:
    style = rng.random()
    month = rng.choice(MONTHS)
    day = rng.randint(1, 28)
    if style < 0.35:
        return f"{month} {day}"
    if style < 0.6:
        return f"{day}/{rng.randint(1, 12)}"
    if style < 0.8:
        return rng.choice(["Monday", "Friday", "the 3rd", "the 14th", "the 21st"])
    suffix = "th" if 11 <= day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{month[:3]} {day}{suffix}"


def _email(rng: random.Random) -> str:
    name = rng.choice(NAMES).lower()
    return f"{name}{rng.randint(1, 99)}@{rng.choice(['gmail.com', 'outlook.com', 'mail.com'])}"


SLOT_FILLERS = {
    "amt": _amount,
    "amt2": _amount,
    "ord": _order,
    "date": _date,
    "email": _email,
    "month": lambda r: r.choice(MONTHS),
    "product": lambda r: r.choice(PRODUCTS),
    "gadget": lambda r: r.choice(GADGETS),
    "plan": lambda r: r.choice(PLANS),
    "refill": lambda r: r.choice(REFILLS),
    "device": lambda r: r.choice(DEVICES),
    "country": lambda r: r.choice(COUNTRIES),
    "name": lambda r: r.choice(NAMES),
    "code": lambda r: r.choice(CODES),
    "err": lambda r: r.choice(ERRORS),
    "n": lambda r: str(r.randint(2, 9)),
}


def fill(template: str, rng: random.Random) -> str:
    text = re.sub(r"\{(\w+)\}", lambda m: SLOT_FILLERS[m.group(1)](rng), template)
    # "the {gadget}" / "my {gadget}" with a name that already has an article.
    return re.sub(r"\b(the|my|your) the\b", r"\1", text, flags=re.IGNORECASE)


# --------------------------------------------------------------------------------------
# Core phrasings per intent (deliberately varied wording, shared vocabulary across intents)
# --------------------------------------------------------------------------------------

CORES: dict[str, list[str]] = {
    "billing": [
        "I was charged twice for the same order",
        "there are two identical payments of {amt} on my card",
        "why did my bill go up this month",
        "the amount taken from my bank doesn't match what I agreed to",
        "can I get a copy of my invoice for {month}",
        "I need a receipt for my company expenses",
        "how do I update the card you have on file",
        "my payment keeps getting declined at checkout",
        "the promo code {code} was not applied to my total",
        "you still owe me {amt} from the return",
        "when will the refund show up on my statement",
        "I see a charge of {amt} I don't recognize",
        "what is this {amt} debit from {date}",
        "can I switch to paying yearly instead of monthly",
        "does the price include VAT",
        "I was billed for the premium tier but I'm on basic",
        "the discount you promised me is missing",
        "I'd like to pay by bank transfer instead",
        "the money left my account but the order says unpaid",
        "my statement shows {amt} but the website said {amt2}",
        "you took money after my free trial without any warning",
        "can I split the cost into installments",
        "the invoice needs to show our company name and tax ID",
        "how much will come out of my account next month",
        "overcharged again",
        "refund please",
        "why is there a late fee on my account",
        "can I put my store credit toward this purchase",
        "PayPal says the transaction has been pending for a week",
        "my gift card balance isn't being deducted correctly",
        "my employer needs an itemized bill",
        "I was told I'd get {amt} back and I'm still waiting",
        "currency conversion cost me way more than the listed price",
        "autopay pulled the funds on the wrong day",
        "you're charging us for a seat we removed",
        "who do I talk to about a disputed transaction",
        "what payment methods do you take",
        "there's a pending hold on my card that never dropped off",
        "sales tax was added twice on order {ord}",
        "I want my money back for {product}",
        "the price dropped a day after I bought it, can I get the difference",
        "can you waive this fee",
        "my card expired, where do I put the new one",
        "my billing address needs changing",
        "the total jumped by {amt} when I hit pay",
        "is there a student discount",
        "I paid but never got a payment confirmation",
        "the renewal went through at a higher rate than advertised",
        "double charge",
        "need to change how I pay",
        "your pricing page and my invoice disagree",
        "I got charged for {product} which I never ordered",
        "can the cost go on my other Visa",
        "why does my bank show {n} small deductions from you",
        "the annual fee hit my account without notice",
        "you debited me {amt} for nothing",
        "the app took {amt} from me for an order I never placed",
        "my plan says {amt} but my account got hit with more",
        "where can I download last year's statements for my taxes",
        "I was promised a credit after the delivery mess and it never appeared",
        "you charged my late mother's card, please reverse it",
        "why am I paying for two subscriptions",
        "the delivery fee on my order looks wrong",
        "the company card should be used, not my personal one",
        "the numbers on my account summary don't add up",
        "can I get reimbursed for the {gadget} that broke",
        "I'd like the {amt} put back on my card, not as store credit",
        "how come the upgrade in the app cost me {amt}",
        "my receipt is missing the VAT number",
        "that fee is wrong",
        "is the trial really free or will you take money",
    ],
    "technical_issue": [
        "the app crashes as soon as I open it",
        "I keep getting error {err}",
        "the page just spins and never loads",
        "nothing happens when I press the save button",
        "the screen goes white after the latest update",
        "my {gadget} won't connect to wifi anymore",
        "data isn't syncing between my phone and my laptop",
        "the export to PDF produces a blank file",
        "notifications stopped coming through",
        "it freezes every time I upload a photo",
        "the website is extremely slow today",
        "is your service down? nothing is working",
        "the dashboard shows numbers that make no sense",
        "the {gadget} keeps restarting by itself",
        "bluetooth pairing fails with my {device}",
        "since the update the battery drains in two hours",
        "the search bar returns no results for anything",
        "I get a 500 error when I open my order history",
        "the Slack integration broke overnight",
        "the app won't install on my {device}",
        "buttons overlap and the layout is broken on my tablet",
        "videos play without any sound",
        "the checkout button doesn't do anything when I tap it",
        "the firmware update failed halfway and now it's stuck",
        "I can't attach files, it just says upload failed",
        "the API returns timeouts since this morning",
        "my settings reset every time I close the program",
        "the camera feed lags by about ten seconds",
        "it says something went wrong, try again later",
        "the {gadget} won't turn on even when fully charged",
        "emails from your system arrive garbled",
        "reports are missing last week's data",
        "bug: the date picker shows the wrong month",
        "the desktop client won't launch on my {device}",
        "audio keeps cutting out on {gadget}",
        "keeps crashing",
        "broken since the update",
        "the map doesn't load on the tracking screen",
        "the QR scanner doesn't recognise anything",
        "the sync icon has been spinning for hours",
        "my changes aren't being kept",
        "the link in your email leads to a 404 page",
        "the touchscreen stopped responding",
        "printing from the app gives me an empty page",
        "the app is eating all my phone storage",
        "dark mode makes the text unreadable",
        "widget not updating",
        "getting a certificate warning on your site",
        "the voice assistant doesn't understand any commands",
        "the device overheats after a few minutes",
        "the account page won't load, just a grey screen",
        "the {gadget} shows a red blinking light and does nothing",
        "the charts are empty on my {device}",
        "downloads stop at 99 percent",
        "the app on my {device} is stuck on the splash screen",
        "my order confirmation page renders as gibberish",
        "I can't open the invoice, the file seems corrupted",
        "the whole app freezes when I tap cancel",
        "the login screen flickers and the keyboard never appears",
        "the tracking emails show broken images",
        "the subscription page is just a blank box",
        "the {gadget} disconnects from my account every night",
        "the payment screen shows a spinning wheel forever",
        "order history is empty even though I've bought things",
        "my delivery notifications come through {n} times each",
        "the app closes itself when I open settings",
        "your website looks broken on Firefox",
        "none of the buttons respond",
        "the speaker makes a buzzing noise",
        "it says up to date but the new features are missing",
        "clicking the refund link does nothing",
    ],
    "account_access": [
        "I can't log in",
        "I forgot my password and the reset email never arrives",
        "my account got locked after too many attempts",
        "I don't get the verification code by text anymore",
        "I changed phones and lost my authenticator",
        "someone else got into my account and changed the email",
        "it says my username doesn't exist but I've used it for years",
        "how do I change the email address I sign in with",
        "the reset link says it has expired",
        "I think I've been hacked",
        "it keeps saying wrong password even though it's right",
        "my profile is suspended and I don't know why",
        "I need to get back into an old account from years ago",
        "sign in with Google stopped working for me",
        "I no longer have access to the email on file",
        "how do I add a second admin to our team workspace",
        "locked out",
        "can't get in",
        "I'm not receiving the one-time passcode",
        "I need to update my phone number for security codes",
        "a colleague left and we need their seat reassigned to me",
        "please unlock my profile",
        "it asks me security questions I never set up",
        "I accidentally made two accounts, can you merge them",
        "there was a sign-in from another country that wasn't me",
        "how do I turn off two step verification",
        "I want to change my username",
        "the password rules won't accept anything I type",
        "my account was deactivated and I want it restored",
        "I can't remember which email I registered with",
        "it says my session expired every time I try to get in",
        "need a password reset",
        "the magic link opens somebody else's profile",
        "I was removed from the family plan and can't see my stuff",
        "recover my account please",
        "my kid changed the password and now nobody knows it",
        "how can I verify my identity to regain access",
        "the captcha never lets me through",
        "my credentials stopped working after the company merger",
        "I need to transfer ownership of the account to a coworker",
        "the sign-in page says user not found",
        "I got an email that my password was changed but that wasn't me",
        "it says permission denied when I open the admin area",
        "I'm stuck in a loop between the login page and the home page",
        "where do I set up a passkey",
        "my employee ID doesn't work on the portal",
        "the code from my authenticator is always rejected",
        "I got kicked out and can't get back in",
        "how do I update the name on my profile",
        "please reactivate my login",
        "my {device} keeps asking me to re-enter my details and then rejects them",
        "who do I ask to get my access back",
        "my SSO won't let me into the team workspace",
        "the face ID option vanished and I don't know my PIN",
        "my account shows someone else's orders",
        "the app won't recognise my password since the update",
        "the subscription is mine but it's under an old email I can't reach",
        "how do I give my assistant access to our billing",
        "my partner can't see our shared plan anymore",
        "I need admin rights back on our workspace",
        "I can't remember my details at all",
        "it wants a code sent to a phone I don't own anymore",
        "please reset my credentials",
        "it won't let me in even after resetting",
        "your system doesn't know who I am anymore",
        "my surname changed when I got married, how do I update it for signing in",
        "the shop account and the app account seem to be different",
        "I was logged in on a shared computer, can you sign me out everywhere",
        "I'm the owner but it treats me like a guest",
    ],
    "shipping": [
        "where is my package",
        "my order {ord} hasn't arrived yet",
        "tracking hasn't updated in {n} days",
        "the courier says delivered but nothing is at my door",
        "can I change the delivery address for order {ord}",
        "the box arrived crushed and the {gadget} is damaged",
        "how long does it take to get to {country}",
        "do you ship internationally",
        "I received someone else's parcel",
        "only half of my items came",
        "the estimated arrival keeps getting pushed back",
        "can I pick it up from a local store instead",
        "I need this before {date}, is express available",
        "the driver left it out in the rain",
        "it's been stuck in customs for two weeks",
        "which carrier are you using",
        "still waiting",
        "it's been {n} weeks, where's my stuff",
        "the wrong item came in the mail",
        "can you hold my delivery while I'm on vacation",
        "the parcel was returned to sender, why",
        "my neighbour ended up with my delivery",
        "can I send back the {gadget}, it's the wrong size",
        "how do I print a return label",
        "I missed the delivery, how do I reschedule",
        "do you deliver on weekends",
        "package is lost",
        "the post office says they never got it from you",
        "my order shows dispatched but it hasn't moved",
        "the charger that should be in the box wasn't there",
        "please send a replacement, mine never showed up",
        "is there a way to upgrade to overnight",
        "the warehouse hasn't sent my order out yet",
        "when will it ship",
        "I wasn't home and the courier took it back to the depot",
        "can you send it to a PO box",
        "my building has a buzzer code, can the driver use it",
        "FedEx says the label was created but nothing since",
        "it took way longer than the 2 days you advertised",
        "the seal on the box was broken when it got here",
        "can I combine my two orders into one box",
        "nothing showed up",
        "I moved and it went to my old place",
        "it needs a signature and I keep missing the van",
        "it's been out for delivery since yesterday morning",
        "the pickup point says my parcel is there but they can't find it",
        "can I get a time window for the drop off",
        "is the {gadget} in stock and when could it reach me",
        "the glass was shattered inside the packaging",
        "when does order {ord} get here",
        "the app shows my box in another city",
        "do you send to {country} and what does postage cost",
        "my order is taking forever",
        "the delivery guy was rude and threw the box",
        "I paid for next day and it's day four",
        "can you tell me when the rest of the order is coming",
        "the app says it's been at the sorting facility since {date}",
        "the package went to the wrong city",
        "do I need to be in to receive it",
        "will it fit through a letterbox",
        "I got a box with nothing inside",
        "my order is sitting at the depot",
        "could you send the missing cable separately",
        "the address on my account is old, will it go there",
        "your courier keeps saying the address can't be found",
        "has my stuff even left your warehouse",
        "the parcel locker code didn't work",
    ],
    "cancellation": [
        "I want to stop my subscription",
        "please close my plan at the end of the month",
        "how do I get out of this contract",
        "not renewing, end it",
        "I'd like to delete my account permanently",
        "please don't charge me again, I'm done with the service",
        "how do I turn off auto renew",
        "I no longer need the membership",
        "terminate my service",
        "I'm moving to a competitor, shut it down",
        "what's the notice period to leave",
        "I want out",
        "is there a fee for ending early",
        "stop the monthly box please",
        "we're winding down the business, close our workspace",
        "I signed up by mistake, undo it",
        "don't want this anymore",
        "end the free trial before it turns into a paid plan",
        "discontinue my plan",
        "how do I unsubscribe from the paid version",
        "my father passed away, please close his subscription",
        "I want to withdraw within the cooling off period",
        "kill my subscription",
        "I'm done, close everything",
        "can I cancel online or do I have to call",
        "no longer interested, please stop the service",
        "end my contract when it expires in {month}",
        "opt me out of the yearly renewal",
        "I'm leaving, what do I need to do",
        "please void the order I placed this morning",
        "can I back out of the purchase before it's sent",
        "I don't use it anymore, how do I quit",
        "close the account for {name}, she's not using it",
        "what happens to my data if I leave",
        "please stop sending me {refill} every month",
        "cancel",
        "cancel asap",
        "hold off on renewing me next year",
        "say goodbye to my subscription please",
        "don't renew my license",
        "I want to terminate the lease on my {gadget}",
        "how do I stop being a member",
        "scrap order {ord}, I changed my mind",
        "we won't be continuing after this billing period",
        "remove my card and shut down my account",
        "I'd like to end {plan} today",
        "I'd rather not be billed again, end the plan",
        "make this the last month",
        "I want my plan to lapse",
        "don't send the next box",
        "take me off the auto pay subscription",
        "I'm not going to keep paying for this, stop it",
        "end the agreement on my {product}",
        "how do I leave without paying the penalty",
        "I'm giving notice",
        "let my membership expire, I won't be back",
        "the order is no longer needed, stop it before it ships",
        "please cancel the app subscription on my {device}",
        "revoke my trial",
        "close down everything associated with {email}",
        "my account should be shut, I'm finished with you",
    ],
}

# Genuinely ambiguous messages, labelled with their primary intent.
AMBIGUOUS: dict[str, list[str]] = {
    "billing": [
        "I cancelled last month but you still charged me {amt}",
        "my package never came and I just want my money back",
        "the app crashed at checkout and now I've paid twice",
        "I paid for express shipping and it came late, I want that fee back",
        "after closing my account you took another payment",
        "I can't log in but I can see you're still billing me",
        "the order was cancelled, where is my refund",
    ],
    "technical_issue": [
        "the cancel button gives me an error",
        "the tracking page crashes on my phone",
        "the payment page throws an error when I enter my card",
        "the app logs me out every few minutes",
        "the password reset page won't load at all",
        "my refund request form keeps failing to submit",
    ],
    "account_access": [
        "I can't log in to update my card details",
        "I can't get into my account to cancel",
        "someone used my account to place an order I didn't make",
        "login fails with error {err}",
        "I can't sign in to check where my order is",
        "my account was closed by mistake and I need back in",
    ],
    "shipping": [
        "the order I cancelled still got sent to me",
        "I was charged for postage twice and the box still hasn't come",
        "the app says delivered but it isn't",
        "I want to return this and get a refund",
        "please redirect the parcel, I'm closing my PO box",
        "the {gadget} arrived broken and won't power on",
    ],
    "cancellation": [
        "you keep charging me, just cancel everything",
        "the app is useless, cancel my plan",
        "I can't even log in so please just close the account",
        "package still isn't here, cancel the order and refund me",
        "stop my subscription and refund the last payment",
        "delete my login and all my data",
    ],
}

# Intent-specific details (extra sentences). Many reuse vocabulary from other intents.
DETAILS: dict[str, list[str]] = {
    "billing": [
        "It was {amt} on {date}.",
        "The order number is {ord}.",
        "The charge says LMF*SUBSCR on my statement.",
        "I'm on {plan}.",
        "My bank says the payment came from you.",
        "I've attached a screenshot of the transaction.",
        "It's the card ending in {n}{n}{n}{n}.",
        "That was for {product}.",
        "The app shows one amount and my bank shows another.",
        "I only ordered once.",
    ],
    "technical_issue": [
        "I'm using the {device} app.",
        "I already tried reinstalling.",
        "Restarting didn't help.",
        "This started on {date}.",
        "It happens on my {device} too.",
        "The error says {err}.",
        "I cleared the cache and cookies already.",
        "Version 4.{n}.1 if that matters.",
        "My internet is fine, everything else works.",
        "It happened right after I placed an order.",
    ],
    "account_access": [
        "My email is {email}.",
        "I've tried {n} times now.",
        "I checked my spam folder.",
        "This is on the {device} app.",
        "The account is under {name}.",
        "I have an order {ord} I need to look at.",
        "I used to sign in with {email}.",
        "I still have the card I paid with if that helps verify.",
        "My old number is disconnected.",
        "Since {date} it won't take it.",
    ],
    "shipping": [
        "The order number is {ord}.",
        "I ordered it on {date}.",
        "I paid {amt} for fast delivery.",
        "It was supposed to come {date}.",
        "It's a gift so it matters.",
        "The tracking in the app hasn't changed.",
        "It's {gadget}.",
        "My account shows it as shipped.",
        "I'm in {country}.",
        "The courier won't answer the phone.",
    ],
    "cancellation": [
        "My account email is {email}.",
        "I'm on {plan}.",
        "I've been charged {amt} a month for it.",
        "The order is {ord}.",
        "Please confirm by email.",
        "I couldn't find the option in the app.",
        "It renews on {date}.",
        "I don't want any more charges.",
        "It's just too expensive now.",
        "We've switched to another provider.",
    ],
}

# Neutral details that make sense for any intent (drawn independently of the label).
SHARED_DETAILS = [
    "My order number is {ord}.",
    "My account email is {email}.",
    "I'm on the {device} app.",
    "This started on {date}.",
    "It's about {product}.",
    "I've attached a screenshot.",
    "The account is in my husband's name.",
    "Order {ord} if you need it.",
    "I pay {amt} a month.",
    "Ticket number {n}{n}{n}{n}{n}.",
    "I already emailed about this on {date}.",
    "My username is {name}{n}{n}.",
]

# Shared pools, drawn independently of the label.
OPENERS_POLITE = [
    "Hi,",
    "Hello,",
    "Hi there,",
    "Good morning,",
    "Good afternoon,",
    "Hello team,",
    "Dear support,",
    "To whom it may concern,",
    "Hey,",
    "Hi {name} here,",
    "Hope you're well.",
    "Sorry to bother you,",
    "Quick question:",
]
OPENERS_ANGRY = [
    "This is unacceptable.",
    "Seriously?",
    "Third time writing about this.",
    "Unbelievable.",
    "I'm so fed up.",
    "Again?!",
    "I've had enough.",
    "Worst experience ever.",
    "Why is nothing simple with you people.",
]
OPENERS_CASUAL = ["hey", "hi", "yo", "ok so", "um", "hello?", "so", "help"]

CONTEXT = [
    "I've been a customer for {n} years and never had a problem until now.",
    "My partner usually handles this but they're away.",
    "I tried calling but waited 40 minutes on hold.",
    "I'm writing from my work email.",
    "Your chatbot was no help at all.",
    "I looked through the help center and couldn't find anything.",
    "I'm not very good with technology so bear with me.",
    "I bought {gadget} a while back.",
    "I have an order coming and an account with you.",
    "I also use the app on my {device}.",
    "I'm travelling at the moment.",
    "This is for my small business.",
    "A friend recommended you, so this is disappointing.",
    "I did check the FAQ first.",
]

CLOSERS_POLITE = [
    "Thanks!",
    "Thank you.",
    "Thanks in advance.",
    "Appreciate it.",
    "Kind regards, {name}",
    "Many thanks.",
    "Cheers.",
    "Thanks for your help.",
    "Best, {name}",
    "Have a nice day.",
]
CLOSERS_ANGRY = [
    "Fix this now.",
    "I expect a reply today.",
    "Ridiculous.",
    "Sort it out.",
    "I'll be leaving a review.",
    "Please just deal with it.",
    "Not happy.",
]
CLOSERS_CASUAL = ["thx", "ty", "pls help", "asap", "thanks", "any ideas?", "cheers"]

# Label-independent word swaps, applied at random to vary surface forms.
SYNONYMS = [
    (r"\bpackage\b", ["parcel", "package", "delivery"]),
    (r"\bparcel\b", ["package", "parcel", "box"]),
    (r"\bthe app\b", ["the application", "the app", "your app"]),
    (r"\bsubscription\b", ["membership", "subscription", "sub"]),
    (r"\bmembership\b", ["subscription", "membership"]),
    (r"\bcharged\b", ["billed", "charged"]),
    (r"\blog in\b", ["sign in", "log in", "login"]),
    (r"\bsign in\b", ["log in", "sign in"]),
    (r"\bmoney\b", ["cash", "money"]),
    (r"(?<!an )\border\b", ["purchase", "order"]),
    (r"\bplease\b", ["kindly", "please", "pls"]),
    (r"(?<!gift )\bcard\b", ["credit card", "card", "debit card"]),
    (r"\banymore\b", ["any more", "anymore"]),
    (r"\bwon't\b", ["will not", "won't"]),
    (r"\bcan't\b", ["cannot", "can't"]),
]

QUESTION_START = (
    "how",
    "can",
    "why",
    "what",
    "when",
    "is",
    "do",
    "does",
    "where",
    "who",
    "which",
    "could",
    "would",
    "will",
    "has",
    "have",
    "are",
    "did",
    "should",
    "where's",
    "what's",
)

SHORTHAND = [
    (r"\bplease\b", "pls"),
    (r"\byou\b", "u"),
    (r"\bcan't\b", "cant"),
    (r"\bdon't\b", "dont"),
    (r"\bI'm\b", "im"),
    (r"\bit's\b", "its"),
    (r"\bwon't\b", "wont"),
    (r"\bdoesn't\b", "doesnt"),
    (r"\bbecause\b", "cuz"),
]


def add_typo(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) > 4 and w.isalpha()]
    if not candidates:
        return text
    i = rng.choice(candidates)
    w = words[i]
    j = rng.randint(1, len(w) - 2)
    kind = rng.random()
    if kind < 0.4:
        w = w[:j] + w[j + 1] + w[j] + w[j + 2 :]  # swap
    elif kind < 0.7:
        w = w[:j] + w[j + 1 :]  # drop
    else:
        w = w[:j] + w[j] + w[j:]  # double
    words[i] = w
    return " ".join(words)


def finish_core(core: str) -> str:
    core = core.strip()
    if core[-1] in ".?!":
        return core[0].upper() + core[1:]
    # A question if its last clause starts with a question word ("..., where is my refund").
    last_clause = re.split(r"[,?:]\s*", core)[-1]
    first = last_clause.split(" ", 1)[0].lower()
    punct = "?" if first in QUESTION_START else "."
    return core[0].upper() + core[1:] + punct


def after_opener(opener: str, body: str) -> str:
    """Lower-case the first letter of a sentence that follows "Hi," (but keep "I ...")."""
    if opener.endswith(",") and not re.match(r"I\b", body) and not body[:2].isupper():
        return body[0].lower() + body[1:]
    return body


def compose(label: str, core: str, rng: random.Random) -> str:
    register = rng.choices(
        ["terse", "plain", "polite", "angry", "rambling", "casual"],
        weights=[0.16, 0.22, 0.22, 0.12, 0.14, 0.14],
    )[0]
    core = fill(core, rng)
    for pattern, options in SYNONYMS:
        if rng.random() < 0.35:
            core = re.sub(pattern, lambda _m, o=options: rng.choice(o), core)
    body = finish_core(core)
    parts: list[str] = []

    def detail() -> str:
        pool = DETAILS[label] if rng.random() < 0.4 else SHARED_DETAILS
        return fill(rng.choice(pool), rng)

    if register == "terse":
        text = body.rstrip(".").lower() if rng.random() < 0.6 else body
        if rng.random() < 0.3:
            text += " " + fill(rng.choice(DETAILS[label]), rng).lower().rstrip(".")
    elif register == "plain":
        parts = [body]
        if rng.random() < 0.55:
            parts.append(detail())
        text = " ".join(parts)
    elif register == "polite":
        parts = [fill(rng.choice(OPENERS_POLITE), rng), body]
        parts[1] = after_opener(parts[0], body)
        if rng.random() < 0.5:
            parts.append(detail())
        parts.append(fill(rng.choice(CLOSERS_POLITE), rng))
        text = " ".join(parts)
    elif register == "angry":
        if rng.random() < 0.7:
            parts.append(rng.choice(OPENERS_ANGRY))
        shout = rng.random() < 0.25
        parts.append(body.upper() if shout else body.rstrip(".") + rng.choice(["!", "!!", "!!!"]))
        if rng.random() < 0.4:
            parts.append(detail())
        if rng.random() < 0.6:
            parts.append(rng.choice(CLOSERS_ANGRY))
        text = " ".join(parts)
    elif register == "rambling":
        if rng.random() < 0.6:
            parts.append(fill(rng.choice(OPENERS_POLITE), rng))
        context = fill(rng.choice(CONTEXT), rng)
        parts.append(after_opener(parts[-1], context) if parts else context)
        if rng.random() < 0.3:
            parts.append(fill(rng.choice(CONTEXT), rng))
        parts.append(body)
        parts.append(detail())
        if rng.random() < 0.5:
            parts.append(detail())
        if rng.random() < 0.6:
            parts.append(fill(rng.choice(CLOSERS_POLITE), rng))
        text = " ".join(parts)
    else:  # casual: lowercase, little punctuation, shorthand
        parts = [rng.choice(OPENERS_CASUAL)] if rng.random() < 0.6 else []
        parts.append(body)
        if rng.random() < 0.35:
            parts.append(detail())
        if rng.random() < 0.5:
            parts.append(rng.choice(CLOSERS_CASUAL))
        text = " ".join(parts).lower()
        text = re.sub(r"[.,](\s|$)", r"\1", text)
        for pattern, repl in SHORTHAND:
            if rng.random() < 0.6:
                text = re.sub(pattern, repl, text, flags=re.IGNORECASE)

    if rng.random() < 0.12:
        text = add_typo(text, rng)
    if rng.random() < 0.08:
        text = text.lower()
    return re.sub(r"\s+", " ", text).strip()


def dedupe_key(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


def generate(
    seed: int = SEED, targets: dict[str, int] = TARGETS, seen: set[str] | None = None
) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows: list[tuple[str, str]] = []
    seen = set() if seen is None else seen
    for label, target in targets.items():
        cores = CORES[label]
        # Cycle through a shuffled copy of the cores so every phrasing is used
        # roughly equally often before any is reused.
        queue: list[str] = []
        count = 0
        attempts = 0
        while count < target:
            attempts += 1
            if attempts > target * 50:
                raise RuntimeError(f"could not generate enough unique rows for {label}")
            if rng.random() < AMBIGUOUS_RATE:
                core = rng.choice(AMBIGUOUS[label])
            else:
                if not queue:
                    queue = cores[:]
                    rng.shuffle(queue)
                core = queue.pop()
            text = compose(label, core, rng)
            n_words = len(text.split())
            if not 3 <= n_words <= 40:
                continue
            key = dedupe_key(text)
            if key in seen:
                continue
            seen.add(key)
            rows.append((text, label))
            count += 1
    rng.shuffle(rows)
    return rows


def main() -> None:
    seen: set[str] = set()
    rows = generate(seen=seen)
    with OUT.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    extra = generate(SEED + 1, {label: UNLABELED_PER_CLASS for label in TARGETS}, seen)
    with UNLABELED.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["text"])
        writer.writerows((text,) for text, _ in extra)
    print(f"wrote {len(extra)} unlabelled rows to {UNLABELED}")
    counts: dict[str, int] = {}
    for _, label in rows:
        counts[label] = counts.get(label, 0) + 1
    print(f"wrote {len(rows)} rows to {OUT}")
    for label, n in counts.items():
        print(f"  {label}: {n}")


if __name__ == "__main__":
    main()
