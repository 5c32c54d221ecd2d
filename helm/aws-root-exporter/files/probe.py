"""Fetch one URL of the exporter and exit 0 on HTTP 200, else 1 (standard library only).

Used by the chart's exec probes (webConfig.basicAuth: the kubelet's httpGet probes cannot
read a password from a Secret) and by the `helm test` pod. Prints no credential.

    python -I probe.py [--credentials DIR] [--ca FILE] [--require-auth] [--timeout S] URL

--credentials  directory with the files `username` and `password` (a Secret volume); the
               bytes are used as they are, as Prometheus does with basicAuth Secrets.
--ca           verify the server certificate with this CA and the URL's host name;
               without it HTTPS is not verified (as the kubelet's HTTPS probes).
--require-auth first check that a request without credentials is refused with 401.
"""

import argparse
import base64
import http.client
import ssl
import sys
import urllib.error
import urllib.request


def fetch(url, headers, context, timeout):
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--credentials")
    parser.add_argument("--ca")
    parser.add_argument("--require-auth", action="store_true")
    parser.add_argument("--timeout", type=float, default=4.0)
    args = parser.parse_args()

    context = None
    if args.url.startswith("https://"):
        if args.ca:
            context = ssl.create_default_context(cafile=args.ca)
        else:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE

    headers = {}
    if args.credentials:
        with open(args.credentials + "/username", "rb") as handle:
            user = handle.read()
        with open(args.credentials + "/password", "rb") as handle:
            password = handle.read()
        headers["Authorization"] = "Basic " + base64.b64encode(user + b":" + password).decode("ascii")

    try:
        if args.require_auth:
            status = fetch(args.url, {}, context, args.timeout)
            if status != 401:
                print(f"{args.url} without credentials: HTTP {status}, expected 401")
                return 1
            print(f"{args.url} without credentials: HTTP 401 (basic auth enforced)")
        status = fetch(args.url, headers, context, args.timeout)
    except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, TLS failures, no HTTP answer
        print(f"{args.url}: {getattr(exc, 'reason', exc)}")
        return 1
    print(f"{args.url}: HTTP {status}")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
