"""Hint templates for the local aspects (restaurant, apartment); see `hints.py`."""

from __future__ import annotations

LOCAL_HINTS: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "restaurant": {
        "cuisine": {
            "Italian": (
                "I'm craving a big plate of pasta and a wood-fired pizza.",
                "Nothing beats fresh risotto and tiramisu for me.",
                "I'd love some gnocchi and a glass of chianti.",
            ),
            "Japanese": (
                "I could eat sushi and ramen every single day.",
                "I'm dying for some fresh sashimi and miso soup.",
                "Tempura and a good bowl of udon would make my night.",
            ),
            "Mexican": (
                "I'm in the mood for tacos and fresh guacamole.",
                "Give me enchiladas and a margarita and I'm happy.",
                "I love spicy salsa, burritos and churros.",
            ),
            "Indian": (
                "I've been dreaming of butter chicken and warm naan.",
                "A good curry with basmati rice and samosas would be perfect.",
                "I love tandoori dishes and a mango lassi.",
            ),
            "French": (
                "I'd love some coq au vin and a creme brulee.",
                "Croissants, escargots, a nice bouillabaisse: that's my kind of cooking.",
                "I dream of a proper steak frites and a tarte tatin.",
            ),
        },
        "diet": {
            "vegan": (
                "I don't eat anything that comes from animals, not even cheese or honey.",
                "Plant-based is the only way I eat.",
                "No meat, no dairy, no eggs for me, ever.",
            ),
            "gluten-free": (
                "I have celiac disease, so no wheat at all.",
                "Bread makes me sick, so wheat is off the table.",
                "Even a crumb of flour from wheat, barley or rye makes me ill.",
            ),
        },
        "ambiance": {
            "quiet": (
                "I want to hear my companion without raising my voice.",
                "Loud music and crowds ruin a meal for me.",
                "A calm, hushed room where we can actually talk is what I need.",
            ),
            "lively": (
                "I love a buzzing place with music and lots of people.",
                "The more energy and noise the better; I hate sleepy places.",
                "I want a fun, bustling atmosphere with a crowd.",
            ),
            "romantic": (
                "It's our anniversary, so candlelight would be perfect.",
                "I'm planning to propose over the meal.",
                "Soft lighting and an intimate table for two, please.",
            ),
        },
        "seating": {
            "outdoor": (
                "I want to eat in the fresh air, on a terrace.",
                "Dining under the open sky is a must for me.",
                "I'd love a table on a patio in the sunshine.",
            ),
            "indoor": (
                "Mosquitoes love me, so I want four walls around me.",
                "I don't want to eat exposed to the weather.",
                "Wind and sun bother me while I eat; I want a proper dining room.",
            ),
        },
    },
    "apartment": {
        "bedrooms": {
            "studio": (
                "It's just me, and I like one open space; separate rooms are pointless.",
                "One open room where I sleep, cook and live is all I need.",
                "I don't need any separate sleeping area at all.",
            ),
            "1 bedroom": (
                "I'd like just one separate room to sleep in, nothing more.",
                "A door between where I sleep and where I live would be nice, just the one.",
                "My partner and I need one private room for sleeping, that's it.",
            ),
            "2 bedrooms": (
                "I need one room for sleeping and a spare one for my home office.",
                "My roommate and I each need our own room, and that's all.",
                "Our child needs their own room next to ours.",
            ),
            "3 bedrooms": (
                "We have two kids, and each needs their own room besides ours.",
                "The whole family needs space: us and two teenagers, each behind their own door.",
                "We need three separate rooms to sleep in.",
            ),
        },
        "neighborhood": {
            "residential": (
                "I need peace at night and friendly neighbors, far from the bars.",
                "A calm family street with kids playing is my ideal.",
                "Tree-lined streets with houses and little traffic, please.",
            ),
            "nightlife": (
                "I want bars and clubs right outside my door.",
                "I like going out late and walking home.",
                "I want to be where the parties are.",
            ),
            "university": (
                "I'm doing a degree, so I want to be near campus.",
                "I want to walk to my lectures.",
                "Being surrounded by students and libraries would be great.",
            ),
        },
        "floor": {
            "ground floor": (
                "My knees are bad, so no stairs for me.",
                "I want to step straight out to the street without climbing.",
                "Elevators make me nervous; I want to live at street level.",
            ),
            "high floor": (
                "I want a view over the rooftops.",
                "I love being way up above the street noise.",
                "Looking down on the city lights from up high is a must.",
            ),
        },
        "kitchen": {
            "full kitchen": (
                "I cook elaborate meals every day and need lots of counter space.",
                "I bake a lot, so I need a real oven and stove.",
                "Cooking for friends is my passion; I need serious cooking space.",
            ),
            "kitchenette": (
                "I barely cook; a microwave and a small fridge are plenty.",
                "I eat out all the time, so a tiny corner for coffee is enough.",
                "Just a little hotplate and a sink would do.",
            ),
        },
        "laundry": {
            "in-unit laundry": (
                "I don't want to carry my clothes down to a basement machine.",
                "I need my own washer and dryer inside.",
                "Doing my washing at home whenever I like is a must.",
            ),
        },
    },
}
