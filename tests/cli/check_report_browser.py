#!/usr/bin/env python3
"""The demo's index.html, opened in headless Chromium: every image renders and the page is not blank.

Checks, on the report of `vitprobe demo --quick`:
1. self-contained: every src= and CSS url() is a data: URI, no href names a file (only #anchors, data: URIs
   and web links), and the page loads no resource at all (the browser's resource timing list is empty);
2. every embedded image decodes fully in Pillow (a truncated PNG still shows its top half in the browser)
   and, for SVG, parses as XML with an <svg> root;
3. in Chromium (a copy of the page with a script appended, read back with --dump-dom): there is at least one
   <img>, and every one has a size and paints at least one non-transparent pixel on a canvas;
4. a screenshot of the page itself (1200 x 3000) is not blank: its pixels vary and hold many colours.
The detectors are checked too: a copy with one image's bytes garbled must show exactly one broken image in
Chromium, and a copy with one image truncated must fail Pillow's check for exactly one image.
Chromium is installed by scripts/setup: a missing chromium is a failure, not a skip.
Usage: check_report_browser.py [REPORT_DIR]   (without it, runs `vitprobe demo --quick` first)
The screenshot and the pages read back are kept in $VITPROBE_WORK/browser/ for inspection.
"""
import base64
import html as html_text
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.parse
import xml.etree.ElementTree as ElementTree

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHROMIUM_TIMEOUT_S = 120
DEMO_TIMEOUT_S = 600
WINDOW = (1200, 3000)
# A blank page is one colour with no variation; the report's text alone gives dozens of grey levels.
MIN_PIXEL_STD = 5.0
MIN_COLOURS = 64
CHECK_ID = "vitprobe-browser-check"
# Appended to a copy of the page: after every image has loaded or failed (the load event), it writes, per
# <img>, its natural size and how many pixels it paints on a canvas, and every resource the page fetched.
CHECK_SCRIPT = """
<pre id="%s"></pre>
<script>
window.addEventListener('load', () => {
  const images = Array.from(document.images).map(image => {
    let painted = 0, error = '';
    try {
      const canvas = document.createElement('canvas');
      canvas.width = image.naturalWidth;
      canvas.height = image.naturalHeight;
      const context = canvas.getContext('2d');
      context.drawImage(image, 0, 0);
      const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
      for (let alpha = 3; alpha < pixels.length; alpha += 4) if (pixels[alpha] > 0) painted++;
    } catch (exception) { error = exception.name; }
    return {alt: image.alt, src: image.getAttribute('src').slice(0, 40), width: image.naturalWidth,
            height: image.naturalHeight, painted: painted, error: error};
  });
  const resources = performance.getEntriesByType('resource').map(entry => entry.name.slice(0, 80));
  document.getElementById('%s').textContent = JSON.stringify({images: images, resources: resources});
});
</script>
""" % (CHECK_ID, CHECK_ID)


class Failure(Exception):
    pass


def run_demo(out):
    binary, shared = os.environ["VITPROBE_BIN"], os.environ["VITPROBE_SHARED"]
    command = [binary, "demo", "--quick", "--threads", "2", "--models-dir", os.path.join(REPO, "models"),
               "--shared", shared, "--out", out]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=DEMO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise Failure(f"vitprobe demo --quick ran over {DEMO_TIMEOUT_S} s")
    if result.returncode != 0:
        print(result.stderr[-3000:])
        raise Failure(f"vitprobe demo --quick exited with {result.returncode}")


def chromium(arguments, work):
    """Runs headless Chromium in its own process group (killed whole on timeout); returns its stdout."""
    executable = shutil.which("chromium")
    if executable is None:
        raise Failure("chromium is not installed (Debian package `chromium`): run ./scripts/setup")
    # Running as root in a container: Chromium's sandbox needs namespaces it may not get. No GPU, /dev/shm may
    # be small, and a profile of its own so that parallel runs do not share Chromium's profile lock.
    command = [executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--hide-scrollbars", f"--user-data-dir={os.path.join(work, 'profile')}",
               *arguments]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=CHROMIUM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise Failure(f"chromium ran over {CHROMIUM_TIMEOUT_S} s: {' '.join(arguments)}")
    if process.returncode != 0:
        print(stderr[-3000:])
        raise Failure(f"chromium exited with {process.returncode}: {' '.join(arguments)}")
    return stdout


def data_uris(page):
    """(media type, bytes) of every data:image URI in src= attributes."""
    images = []
    for match in re.finditer(r"""\bsrc\s*=\s*(["'])data:(image/[\w.+-]+)((?:;[^,"']*)?),(.*?)\1""", page, re.S):
        _, media_type, parameters, payload = match.groups()
        if "base64" in parameters:
            images.append((media_type, base64.b64decode(payload)))
        else:
            images.append((media_type, urllib.parse.unquote_to_bytes(html_text.unescape(payload))))
    return images


def outside_references(page):
    """Every reference of the page to something outside itself."""
    found = []
    for attribute, value in re.findall(r"""\b(src|href)\s*=\s*["']?([^"'\s>]*)""", page, re.I):
        if value.startswith("data:"):
            continue
        if attribute.lower() == "href" and (value.startswith("#") or re.match(r"(https?|mailto):", value)):
            continue
        found.append(f"{attribute}={value[:60]}")
    for value in re.findall(r"""url\(\s*["']?([^"')]*)""", page):
        if not value.startswith("data:") and not value.startswith("#"):
            found.append(f"url({value[:60]})")
    return found


def undecodable_images(images):
    """Descriptions of the embedded images that Pillow (raster) or the XML parser (SVG) cannot read whole."""
    bad = []
    for index, (media_type, payload) in enumerate(images):
        try:
            if media_type == "image/svg+xml":
                if not ElementTree.fromstring(payload).tag.endswith("svg"):
                    raise ValueError("the root element is not <svg>")
            else:
                with Image.open(io.BytesIO(payload)) as image:
                    image.load()
        except Exception as error:
            bad.append(f"image {index + 1} ({media_type}, {len(payload)} bytes): {error}")
    return bad


def with_check_script(page):
    end = page.lower().rfind("</body>")
    return page + CHECK_SCRIPT if end < 0 else page[:end] + CHECK_SCRIPT + page[end:]


def browser_check(page, name, work):
    """Opens a copy of the page with the check script in Chromium; returns the script's findings."""
    path = os.path.join(work, name)
    with open(path, "w") as file:
        file.write(with_check_script(page))
    dom = chromium(["--virtual-time-budget=5000", "--dump-dom", "file://" + path], work)
    match = re.search(rf'<pre id="{CHECK_ID}">(.*?)</pre>', dom, re.S)
    if match is None or not match.group(1).strip():
        raise Failure(f"{name}: the check script left no result in the DOM (did the page load?)")
    return json.loads(html_text.unescape(match.group(1)))


def broken_images(findings):
    return [f"<img alt='{image['alt']}' src='{image['src']}...'>: {image['width']}x{image['height']}, "
            f"{image['painted']} pixels painted{', ' + image['error'] if image['error'] else ''}"
            for image in findings["images"]
            if image["width"] == 0 or image["height"] == 0 or image["painted"] == 0 or image["error"]]


def blank_screenshot(path):
    """Why the screenshot looks blank, or None."""
    with Image.open(path) as image:
        if image.size != WINDOW:
            return f"the screenshot is {image.size[0]}x{image.size[1]}, not {WINDOW[0]}x{WINDOW[1]}"
        pixels = np.asarray(image.convert("RGB"))
    std = float(pixels.std())
    packed = (pixels[..., 0].astype(np.uint32) << 16) | (pixels[..., 1].astype(np.uint32) << 8) | pixels[..., 2]
    colours = len(np.unique(packed))
    print(f"screenshot: pixel standard deviation {std:.1f}, {colours} colours")
    if std < MIN_PIXEL_STD or colours < MIN_COLOURS:
        return f"the screenshot looks blank: pixel standard deviation {std:.1f} (needs >= {MIN_PIXEL_STD}), " \
               f"{colours} colours (needs >= {MIN_COLOURS})"
    return None


def garbled_copy(page, corrupt):
    """The page with the bytes of its first base64 image replaced by corrupt(bytes)."""
    match = re.search(r"""\bsrc\s*=\s*["']data:image/[\w.+-]+;base64,([^"']*)""", page)
    if match is None:
        raise Failure("the report has no base64 image to corrupt for the detector checks")
    payload = base64.b64encode(corrupt(base64.b64decode(match.group(1)))).decode()
    return page[:match.start(1)] + payload + page[match.end(1):]


def check(report, work):
    failures = []
    index = os.path.join(report, "index.html")
    if not os.path.isfile(index):
        raise Failure(f"{index} is missing")
    with open(index) as file:
        page = file.read()

    references = outside_references(page)
    if references:
        failures.append(f"index.html refers outside itself: {', '.join(references[:5])}")
    images = data_uris(page)
    bad = undecodable_images(images)
    failures += [f"embedded image does not decode: {description}" for description in bad]

    findings = browser_check(page, "index-checked.html", work)
    count = len(findings["images"])
    broken = broken_images(findings)
    print(f"chromium: {count} <img> elements, {len(broken)} broken, {len(images)} data:image URIs, "
          f"{len(findings['resources'])} resources fetched")
    if count == 0:
        failures.append("the page shows no <img> at all")
    if count != len(images):
        failures.append(f"{count} <img> elements in the browser, {len(images)} data:image URIs in the file")
    failures += [f"broken image: {description}" for description in broken]
    if findings["resources"]:
        failures.append(f"the page fetched resources: {', '.join(findings['resources'][:5])}")

    screenshot = os.path.join(work, "screenshot.png")
    if os.path.exists(screenshot):
        os.remove(screenshot)
    chromium([f"--screenshot={screenshot}", f"--window-size={WINDOW[0]},{WINDOW[1]}", "file://" + index], work)
    if not os.path.isfile(screenshot):
        failures.append("chromium wrote no screenshot")
    else:
        blank = blank_screenshot(screenshot)
        if blank:
            failures.append(blank)

    # The detectors themselves: each must flag exactly the one image spoiled on purpose (checked on a report
    # whose images are all sound; a report with a broken image has failed already).
    if images and count and not broken and not bad:
        garbled = browser_check(garbled_copy(page, lambda data: b"garbled!" + data[8:]),
                                "index-garbled.html", work)
        flagged = len(broken_images(garbled))
        print(f"detector check: a copy with one image's header garbled shows {flagged} broken image(s)")
        if flagged != 1:
            failures.append(f"the browser detector flags {flagged} broken images in a copy with one image "
                            f"garbled (expected 1)")
        truncated = data_uris(garbled_copy(page, lambda data: data[:len(data) // 2]))
        flagged = len(undecodable_images(truncated))
        print(f"detector check: a copy with one image truncated has {flagged} undecodable image(s)")
        if flagged != 1:
            failures.append(f"the decoding detector flags {flagged} images in a copy with one image truncated "
                            f"(expected 1)")
    return failures


def main():
    work = os.path.abspath(os.path.join(os.environ["VITPROBE_WORK"], "browser"))
    os.makedirs(work, exist_ok=True)
    try:
        if len(sys.argv) > 1:
            report = os.path.abspath(sys.argv[1])
        else:
            report = os.path.abspath(os.path.join(os.environ["VITPROBE_WORK"], "demo"))
            run_demo(report)
        failures = check(report, work)
    except Failure as failure:
        failures = [str(failure)]
    for failure in failures:
        print("FAIL", failure)
    print(f"report in the browser ({work}): " + ("ok" if not failures else f"{len(failures)} failure(s)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
