"""`make show`: the items and objects of the stack that `make run` is running."""

import json
import sys

import boto3
from botocore.exceptions import EndpointConnectionError

from local_stack import STATE, plain_item, sha256_of


def main() -> int:
    try:
        stack = json.loads((STATE / "run" / "stack.json").read_text())
    except FileNotFoundError:
        print("no local stack: start one with `make run`", file=sys.stderr)
        return 1
    session = dict(endpoint_url=stack["endpoint"], region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
    dynamodb, s3 = boto3.client("dynamodb", **session), boto3.client("s3", **session)
    items = []
    try:
        for page in dynamodb.get_paginator("scan").paginate(TableName=stack["table"]):
            items += [plain_item(i) for i in page["Items"]]
    except EndpointConnectionError:
        print(f"nothing answers on {stack['endpoint']}: is `make run` still running?",
              file=sys.stderr)
        return 1
    print(f"== table {stack['table']}: {len(items)} items")
    for item in sorted(items, key=lambda i: (i["pk"], i["sk"])):
        extra = {k: item[k] for k in ("state", "attempts", "size", "sha256", "last_error")
                 if k in item}
        print(f"{item['pk']:<48} {item['sk']:<52} {item.get('item_type', ''):<10} "
              f"{json.dumps(extra) if extra else ''}")
    print(f"== bucket {stack['bucket']}")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack["bucket"]):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=stack["bucket"], Key=obj["Key"])["Body"].read()
            print(f"{len(body):>12,} B  sha256 {sha256_of(body)}  {obj['Key']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
