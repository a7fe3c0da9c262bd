"""Run Ganeti's official RAPI client (Debian's python3-ganeti-rapi) unmodified.

Executed with the *system* Python (``/usr/bin/python3``) by
test_ganeti_client.py: reads ``{"host", "port", "user", "password",
"cafile", "calls": [[method, args, kwargs, wait], ...]}`` as JSON on stdin,
calls each ``GanetiRapiClient`` method in order and prints one JSON list:
per call ``{"ok": true, "result": ..., "job": {...}}`` (``job`` when ``wait``:
the finished job's status and results) or ``{"ok": false, "error": str,
"code": int}``. Imports nothing of Corral.
"""

import json
import sys

from ganeti.rapi import client as rapi


def main():
    spec = json.load(sys.stdin)
    cl = rapi.GanetiRapiClient(
        spec["host"], port=spec["port"], username=spec["user"], password=spec["password"],
        curl_config_fn=rapi.GenericCurlConfig(cafile=spec["cafile"], timeout=120))
    out = []
    for method, args, kwargs, wait in spec["calls"]:
        try:
            result = getattr(cl, method)(*args, **kwargs)
            entry = {"ok": True, "result": result}
            if wait:
                done = cl.WaitForJobCompletion(result, period=0.2, retries=600)
                job = cl.GetJobStatus(result)
                entry["job"] = {"completed": done, "status": job["status"],
                                "opresult": job["opresult"]}
        except rapi.GanetiApiError as err:
            entry = {"ok": False, "error": str(err), "code": err.code}
        out.append(entry)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
