"""`napari-polyp models`: the networks and their cards."""
import json


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="one JSON object per network")


def run(args) -> int:
    import models

    for name in models.list_models():
        card = models.get_card(name)
        print(json.dumps(card.to_dict()) if args.json else f"{name:12s} {card.summary()}")
    return 0
