"""Sources -> video files: generator, local path and URL (yt-dlp against a real local HTTP server)."""

import functools
import http.server
import json
import socket
import threading
from contextlib import contextmanager

import pytest

from latentwm.core.errors import PipelineError
from latentwm.data.download import fetch, resolve_url, spec_from_resolved
from latentwm.data.sources import VideoSpec, all_video_specs, static_videos
from latentwm.data.synthetic import write_clip
from latentwm.data.video import probe

CFG = {"max_height": 360, "retries": 0, "socket_timeout": 5, "playlist_limit": 0}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextmanager
def serve_dir(directory):
    """A real HTTP server on 127.0.0.1 (random port) serving `directory`; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/clip.mp4"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = tmp_path_factory.mktemp("site")
    write_clip(d / "clip.mp4", 0, frames=20, fps=10, size=32, seed=0)
    with serve_dir(d) as url:
        yield d, url


def test_url_is_resolved_and_downloaded(site, tmp_path):
    d, base = site
    specs = resolve_url({"id": "web", "url": f"{base}/clip.mp4"}, CFG)
    assert specs == [VideoSpec("web_clip", "web", "url", url=f"{base}/clip.mp4", key="generic:clip")]
    out = tmp_path / "videos" / "web_clip.mp4"
    fetch(specs[0], out, CFG, log=lambda m: None)
    assert out.read_bytes() == (d / "clip.mp4").read_bytes()
    assert [p.name for p in out.parent.iterdir()] == ["web_clip.mp4"], "no temp dir left behind"


def test_playlist_page_is_expanded_and_limited(site):
    """An HTML page with three <video> tags is a playlist to yt-dlp's generic extractor."""
    d, base = site
    tags = "".join(f'<video><source src="clip.mp4?{i}" type="video/mp4"></video>' for i in range(3))
    (d / "list.html").write_text(f"<html><head><title>list</title></head><body>{tags}</body></html>")
    specs = resolve_url({"id": "pl", "url": f"{base}/list.html"}, CFG)
    assert [s.video for s in specs] == ["pl_list_1", "pl_list_2", "pl_list_3"]
    assert len({s.key for s in specs}) == 3 and specs[1].url == f"{base}/clip.mp4?1"
    limited = resolve_url({"id": "pl", "url": f"{base}/list.html"}, {**CFG, "playlist_limit": 2})
    assert limited == specs[:2]


def test_unreachable_url_is_one_line(tmp_path):
    url = closed_port_url()
    with pytest.raises(PipelineError) as e:
        resolve_url({"id": "gone", "url": url}, CFG)
    assert "source gone" in str(e.value) and url in str(e.value) and "\n" not in str(e.value)
    spec = VideoSpec("gone_clip", "gone", "url", url=url)
    with pytest.raises(PipelineError) as e:
        fetch(spec, tmp_path / "gone_clip.mp4", CFG, log=lambda m: None)
    assert "video gone_clip" in str(e.value) and url in str(e.value) and "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_missing_page_is_one_line(site, tmp_path):
    spec = VideoSpec("web_nope", "web", "url", url=f"{site[1]}/nope.mp4")
    with pytest.raises(PipelineError, match="404"):
        fetch(spec, tmp_path / "web_nope.mp4", CFG, log=lambda m: None)


def test_generator_spec_renders_a_clip(tmp_path):
    [spec] = static_videos({"id": "gen", "generator": {"clips": 1, "frames": 12, "fps": 6, "size": 16, "seed": 3}})
    fetch(spec, tmp_path / "gen_000.mp4", CFG, log=lambda m: None)
    assert probe(tmp_path / "gen_000.mp4")["width"] == 16


def test_local_path_is_linked_never_modified(site, tmp_path):
    original = site[0] / "clip.mp4"
    before = original.read_bytes()
    [spec] = static_videos({"id": "mine", "path": str(original)})
    out = tmp_path / "mine.mp4"
    fetch(spec, out, CFG, log=lambda m: None)
    assert out.is_symlink() and out.resolve() == original.resolve()
    fetch(spec, out, CFG, log=lambda m: None)  # again over an existing link
    assert original.read_bytes() == before


@pytest.mark.parametrize("content", [None, b""])
def test_missing_or_empty_local_file(tmp_path, content):
    path = tmp_path / "in.mp4"
    if content is not None:
        path.write_bytes(content)
    [spec] = static_videos({"id": "mine", "path": str(path)})
    with pytest.raises(PipelineError, match=r"^source mine: file .*in.mp4 (does not exist|is empty)"):
        fetch(spec, tmp_path / "out" / "mine.mp4", CFG, log=lambda m: None)
    assert not (tmp_path / "out" / "mine.mp4").exists()


def test_all_video_specs_drops_a_video_listed_twice(tmp_path):
    sources = [
        {"id": "gen", "generator": {"clips": 2, "frames": 8}},
        {"id": "a", "url": "http://example.invalid/list"},
        {"id": "b", "url": "http://example.invalid/other"},
        {"id": "f1", "path": str(tmp_path / "x.mp4")},
        {"id": "f2", "path": str(tmp_path / "x.mp4")},
    ]
    entry = lambda sid, yt: VideoSpec(f"{sid}_{yt}", sid, "url", url="u", key=f"youtube:{yt}")  # noqa: E731
    resolved = {"a": [entry("a", "v1"), entry("a", "v2")], "b": [entry("b", "v2"), entry("b", "v3")]}
    assert sorted(all_video_specs(sources, resolved)) == ["a_v1", "a_v2", "b_v3", "f1", "gen_000", "gen_001"]


def test_spec_from_resolved(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"source": "s", "url": "u", "videos": [{"video": "s_a", "source": "s", "kind": "url", "url": "ua"}]}))
    assert spec_from_resolved(path, "s_a") == VideoSpec("s_a", "s", "url", url="ua")
    with pytest.raises(PipelineError, match="s_b is not listed"):
        spec_from_resolved(path, "s_b")
    path.write_text(json.dumps({"source": "s", "url": "u", "videos": [{"video": "s_a", "link": "ua"}]}))  # edited by hand
    with pytest.raises(PipelineError, match=r"s.json is not a video list that resolve_source wrote; delete it and rerun$"):
        spec_from_resolved(path, "s_a")


def test_too_few_local_videos_are_cut_into_parts(tmp_path):
    """One recording (all sources local, fewer videos than train, val and test need) is cut in
    time into AUTO_PARTS videos, unless its source sets parts or it brings an actions sidecar;
    enough videos leave the list as it is; with a URL source (its count known once resolved) the
    URL videos are cut instead (test_one_url_video_is_cut_into_parts)."""
    from latentwm.data.sources import AUTO_PARTS, sources_problems, with_parts
    from latentwm.data.splits import assign_splits

    one = [{"id": "rec", "path": str(tmp_path / "rec.mp4")}]
    cut = with_parts(one)
    assert cut == [{**one[0], "parts": AUTO_PARTS}] and with_parts(cut) == cut  # idempotent
    specs = all_video_specs(one, {})
    assert list(specs) == [f"rec_part{k:02d}" for k in range(AUTO_PARTS)]
    assert [s.part for s in specs.values()] == [[k, AUTO_PARTS] for k in range(AUTO_PARTS)]
    assert len({s.key for s in specs.values()}) == AUTO_PARTS  # distinct videos, one file
    split = assign_splits(list(specs), 0.125, 0.25)
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (5, 1, 2)
    assert with_parts([{**one[0], "parts": 2}]) == [{**one[0], "parts": 2}]  # the user's choice stands
    with pytest.raises(PipelineError, match=r"^splits: 2 video\(s\) cannot fill .*or cut the videos into parts"):
        assign_splits(list(all_video_specs([{**one[0], "parts": 2}], {})), 0.125, 0.25)
    three = [{"id": f"v{i}", "path": str(tmp_path / f"v{i}.mp4")} for i in range(3)]
    assert with_parts(three) == three
    with_url = one + [{"id": "web", "url": "http://example.invalid/list"}]
    assert with_parts(with_url) == with_url
    (tmp_path / "rec.actions.txt").write_text("0\n")
    assert with_parts(one) == one  # its actions could not follow a cut
    assert sources_problems([{**one[0], "parts": 4}]) == [
        f"config key sources[0].parts: {one[0]['path']} has an actions sidecar, whose actions cannot follow a cut yet; "
        "remove parts (or the sidecar)"]
    assert "parts cuts a file (path or url) only" in sources_problems([{"id": "g", "generator": {}, "parts": 2}])[0]
    # extract_frames' source param: a whole video keeps the plain id it had before parts (no rerun)
    assert static_videos(one[0])[0].extract_source == "rec"
    assert static_videos({"id": "g", "generator": {"clips": 1}})[0].extract_source == "g"
    assert specs["rec_part03"].extract_source == {"source": "rec", "part": [3, AUTO_PARTS]}


def test_one_url_video_is_cut_into_parts(tmp_path):
    """A URL source that resolves to too few videos (one YouTube video) is cut in time into
    AUTO_PARTS videos that all read the one downloaded file; its own `parts` stands; local files
    beside it are not cut, and enough videos leave everything whole."""
    from latentwm.data.sources import AUTO_PARTS

    web = [{"id": "web", "url": "http://example.invalid/watch?v=abc"}]
    entry = [VideoSpec("web_abc", "web", "url", url="http://example.invalid/abc", key="x:abc")]
    specs = all_video_specs(web, {"web": entry})
    assert list(specs) == [f"web_abc_part{k:02d}" for k in range(AUTO_PARTS)]
    assert {s.file_id for s in specs.values()} == {"web_abc"}  # one download for all parts
    assert specs["web_abc_part05"].extract_source == {"source": "web", "part": [5, AUTO_PARTS]}
    assert len({s.key for s in specs.values()}) == AUTO_PARTS
    assert list(all_video_specs([{**web[0], "parts": 4}], {"web": entry})) == [f"web_abc_part{k:02d}" for k in range(4)]
    rec = {"id": "rec", "path": str(tmp_path / "rec.mp4")}
    mixed = all_video_specs([rec, *web], {"web": entry})  # 2 videos: the URL one is cut, the file is not
    assert list(mixed) == ["rec", *(f"web_abc_part{k:02d}" for k in range(AUTO_PARTS))] and mixed["rec"].file_id == "rec"
    three = [VideoSpec(f"web_{i}", "web", "url", url=f"http://x/{i}", key=f"x:{i}") for i in range(3)]
    assert list(all_video_specs(web, {"web": three})) == ["web_0", "web_1", "web_2"]  # enough: whole
    assert three[0].extract_source == "web"  # a whole URL video's params are the plain id, as before parts


def test_a_pinned_source_keeps_its_split(tmp_path):
    """sources[].split pins a source's videos: the splits rule (run by hand, as the pipeline runs it)
    puts them there and leaves the unpinned videos where they were without them; a pin that empties
    a split and a split name that is none are one-line config errors."""
    import subprocess
    import sys

    import yaml

    from latentwm.pipeline.check import config_problems

    eight = [{"id": f"rec{i}", "path": str(tmp_path / f"rec{i}.mp4")} for i in range(8)]
    extra = [{"id": f"bot{i}", "path": str(tmp_path / f"bot{i}.mp4"), "split": "train"} for i in range(3)]

    def splits(sources):
        (tmp_path / "c.yaml").write_text(yaml.safe_dump({"sources": sources, "splits": {"val": 0.125, "test": 0.25}}))
        subprocess.run([sys.executable, "workflow_scripts/splits.py", str(tmp_path / "c.yaml"), str(tmp_path / "s.json")],
                       check=True, capture_output=True)
        return json.loads((tmp_path / "s.json").read_text())

    before, after = splits(eight), splits(eight + extra)
    assert after["train"] == sorted(before["train"] + ["bot0", "bot1", "bot2"])
    assert (after["val"], after["test"]) == (before["val"], before["test"])
    held = splits(eight + [{**extra[0], "split": "test"}])  # a pinned test video: the fractions fill the rest
    assert "bot0" in held["test"] and len(held["test"]) == 3 and len(held["val"]) == 1
    schema = "schemas/config.schema.yaml"
    assert any("cannot fill train, val and test (val 0, test 0, train 3)" in p
               for p in config_problems({"sources": extra}, schema))
    assert any("sources" in p and "holdout" in p for p in config_problems({"sources": [{**extra[0], "split": "holdout"}]}, schema))
