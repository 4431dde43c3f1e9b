"""Hint templates for the travel aspects (flight, hotel, car); see `hints.py`."""

from __future__ import annotations

TRAVEL_HINTS: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "flight": {
        "stops": {
            "nonstop": (
                "I really can't stand sitting around in airports between flights.",
                "I want to board one plane and get off at my destination, no changing planes.",
                "Connections stress me out; I'd rather go straight there.",
            ),
            "1 stop": (
                "On long trips I like one break in the middle to stretch my legs, but just a single layover.",
                "A single connection is fine by me, even welcome, but never more than that.",
                "I like to break the journey once halfway, not twice and not zero times.",
            ),
        },
        "departure": {
            "early morning": (
                "I'm an early bird; I like leaving right around sunrise.",
                "I want to arrive with the whole day ahead of me, so I'll leave at dawn.",
                "Getting up at 5 a.m. to travel doesn't bother me at all; in fact I prefer it.",
            ),
            "afternoon": (
                "I can't function early, so I'd like to leave after lunch.",
                "I'd like a relaxed start: sleep in, have lunch, then head out.",
                "Somewhere between lunch and dinner would be the ideal time to leave.",
            ),
            "evening": (
                "I work all day, so I can only leave after the office closes, but before bedtime.",
                "I'd like to leave around sunset, once my workday is done.",
                "Leaving around dinnertime works best for me.",
            ),
            "red-eye": (
                "I'd rather travel overnight and sleep on the plane.",
                "I like to go through the night and wake up at my destination.",
                "Leaving around midnight is perfect for me; I sleep through the trip.",
            ),
        },
        "cabin": {
            "economy": (
                "I just need a seat; I don't care about fancy service on board.",
                "Extra legroom and champagne aren't worth a cent to me.",
                "The most basic seat is perfectly fine for me.",
            ),
            "premium economy": (
                "I need a bit more legroom than the standard seats, but a lie-flat bed would be overkill.",
                "Something a step above the basic seats, though not the fancy front cabin.",
                "I'm tall, so a little extra space matters, but I won't pay for a bed in the sky.",
            ),
            "business": (
                "I have to work on board and want a seat that turns into a bed.",
                "I'll want a lie-flat seat and access to the lounge.",
                "My company pays for the front cabin, and I intend to use it.",
            ),
        },
        "baggage": {
            "carry-on only": (
                "I travel light, just a small backpack under the seat in front of me.",
                "Everything I need fits into a little cabin bag.",
                "I never bring a suitcase for the hold.",
            ),
            "checked bag": (
                "I always bring a big suitcase that won't fit in the overhead bin.",
                "I'm bringing my golf clubs, so I need to drop luggage at the counter.",
                "I pack heavy; I need room for a large suitcase down below.",
            ),
        },
    },
    "hotel": {
        "area": {
            "downtown": (
                "I want to step outside into the heart of the city, among the skyscrapers.",
                "Being right in the center, near the main square and the big shops, is important.",
                "I want to walk to the office towers and the theaters.",
            ),
            "beach": (
                "I want to hear the waves from my window.",
                "I'd love to walk straight onto the sand when I wake up.",
                "Being by the sea is a must for me.",
            ),
            "airport": (
                "I have a very early connection, so I want to be next to the terminal.",
                "I want to roll out of bed and be at my gate in minutes.",
                "I'm leaving again right after, so staying near the runways makes sense.",
            ),
            "old town": (
                "I love cobblestone streets and historic buildings.",
                "I want to stay among medieval churches and narrow alleys.",
                "Charming centuries-old neighborhoods are my thing.",
            ),
        },
        "stars": {
            "2 stars": (
                "I only need a bed and a shower; the simpler, the better.",
                "A basic budget place is all I need.",
                "I'll barely be in my room, so bare-bones is fine.",
            ),
            "3 stars": (
                "Something comfortable and mid-range; I don't need luxury, but not a hostel either.",
                "A decent, ordinary place is right for me, nothing too fancy or too shabby.",
                "Middle of the road: clean and comfy, without the frills.",
            ),
            "4 stars": (
                "I like it upscale and polished, though the very top tier would be overkill.",
                "Quite nice, with good service, but not palace-level luxury.",
                "One step below the most luxurious is my sweet spot.",
            ),
            "5 stars": (
                "I want the full luxury treatment: marble lobby, butler, the works.",
                "Only the very finest, most luxurious places will do.",
                "Spare no expense on the quality of the place; I want the top tier.",
            ),
        },
        "breakfast": {
            "breakfast included": (
                "I can't start my day without a buffet downstairs.",
                "I'd like my eggs and coffee served right where I stay.",
                "Having my first meal of the day taken care of at the place is important.",
            ),
            "room only": (
                "I always eat out at the start of the day, so I don't want to pay for food at the place.",
                "I skip the first meal of the day anyway, so I don't need it in the rate.",
                "I prefer to grab a pastry at a local cafe rather than eat where I stay.",
            ),
        },
        "pets": {
            "pets allowed": (
                "My dog comes everywhere with me.",
                "I'm traveling with my cat; she can't stay home alone.",
                "My little terrier is part of the family and comes along.",
            ),
        },
        "pool": {
            "pool": (
                "I swim laps every day, wherever I am.",
                "I'd love to lounge by the water with a cocktail, right on the premises.",
                "My kids will want to splash around for hours.",
            ),
        },
    },
    "car": {
        "type": {
            "compact": (
                "I need something small that's easy to park in tight city streets.",
                "A little one that sips fuel and fits anywhere is ideal.",
                "Parking in the center is a nightmare, so the smaller the better.",
            ),
            "SUV": (
                "We'll be on mountain dirt roads, so I want high ground clearance.",
                "I need something big and rugged for rough terrain.",
                "A tall, sturdy vehicle with four-wheel drive would be best.",
            ),
            "convertible": (
                "I want to feel the wind in my hair on the coastal road.",
                "Cruising with the top down is the dream.",
                "I want to be able to fold the roof back in the sun.",
            ),
            "minivan": (
                "There will be seven of us plus luggage.",
                "I need sliding doors and three rows of seats for the kids.",
                "We're a big family, so we need lots of seats.",
            ),
        },
        "transmission": {
            "automatic": (
                "I never learned to drive stick.",
                "I don't want to deal with a clutch pedal.",
                "Shifting gears myself is not something I can do.",
            ),
            "manual": (
                "I love working a clutch and shifting gears myself.",
                "A gearstick gives me more control; I won't take anything else.",
                "It isn't fun for me unless I change gears myself.",
            ),
        },
        "fuel": {
            "electric": (
                "I want zero tailpipe emissions; I'll plug it in at night.",
                "I'd like to charge it up and never visit a gas pump.",
                "Battery-powered, please: no fuel burning at all.",
            ),
            "hybrid": (
                "I want a battery plus an engine to save fuel, without having to plug in.",
                "Half battery, half engine would be ideal for the long distances.",
                "Something that switches between motor and engine on its own would suit me.",
            ),
            "gasoline": (
                "I'll be in remote areas with no charging points, so a regular petrol engine is best.",
                "I want a good old combustion engine I can fill up anywhere.",
                "Charging stations are scarce where I'm going, so I want a tank I can fill at any pump.",
            ),
        },
        "child seat": {
            "child seat": (
                "My toddler is coming along and needs proper safety gear in the back.",
                "We're traveling with a baby.",
                "My two-year-old has to be buckled in safely.",
            ),
        },
    },
}
