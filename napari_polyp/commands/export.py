"""`napari-polyp export`: a corrections dataset as COCO JSON, an nnU-Net raw dataset or a CSV table.

Items that cannot be read are left out and named at the end (exit status 1), as `predict` does."""
import json
import sys

FORMATS = ("coco", "nnunet", "csv")  # napari_polyp.corrections.export.FORMATS, kept import-free here


def add_arguments(parser):
    parser.add_argument("--data", required=True, help="corrections dataset folder")
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="coco: instance JSON with RLE masks; nnunet: DatasetNNN_Name/imagesTr+labelsTr+"
                             "dataset.json; csv: one row per item")
    parser.add_argument("--out", required=True, help="output file (coco, csv) or folder (nnunet)")
    parser.add_argument("--status", default=None,
                        help="comma-separated statuses to export (default: accepted,corrected for coco/nnunet, "
                             "every item for csv)")
    parser.add_argument("--category", default="polyp", help="the object's name (COCO category, nnU-Net label)")
    parser.add_argument("--dataset-id", type=int, default=501, help="nnU-Net dataset id (1..999)")
    parser.add_argument("--name", default="Polyp", help="nnU-Net dataset name")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output file (or nnU-Net folder, whose stale cases are removed)")


def run(args) -> int:
    from napari_polyp.corrections.export import export

    from ..io.skipped import report_skipped

    statuses = tuple(s.strip() for s in args.status.split(",") if s.strip()) if args.status else None
    options = {}
    if args.format == "coco":
        options = {"category": args.category}
    elif args.format == "nnunet":
        options = {"dataset_id": args.dataset_id, "name": args.name, "label": args.category}
    summary = export(args.data, args.format, args.out, statuses, overwrite=args.overwrite, **options)
    print(json.dumps(summary))
    print(f"wrote {summary['out']}", file=sys.stderr)
    return report_skipped("export", summary["skipped"], what="item(s)")
