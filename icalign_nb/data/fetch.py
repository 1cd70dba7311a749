"""Public files: pinned URLs with sha256, a local data directory, the verified cache; shipped resources.

pooch downloads, checks and caches each pinned file (`_retrieve`); this module keeps the table of pins,
the public layout, the one-line report per file and the cache's `SHA256SUMS`.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..cache import cache_root
from ..errors import UserError, first_line
from ..files import atomic_write_text, sha256_file

DATA_DIR_ENV = "ICALIGN_DATA_DIR"

_RELEASE = (
    "https://raw.githubusercontent.com/xhan77/in-context-alignment/61fc2bd104e17764acae6e3be1dfd4424b47b2ad/"
)
_ALPACA_EVAL = (
    "https://raw.githubusercontent.com/tatsu-lab/alpaca_eval/"
    "cd543a149df89434d8a54582c0151c0b945c3d20/results/{}/model_outputs.json"
)
_ANNOTATIONS = (
    "https://raw.githubusercontent.com/tatsu-lab/alpaca_eval/"
    "cd543a149df89434d8a54582c0151c0b945c3d20/results/{}/alpaca_eval_gpt4/annotations.json"
)
_URIAL = "https://raw.githubusercontent.com/Re-Align/URIAL/127f94ed4a08955a79368355fcd878a2ee8c0e2e/"


@dataclass(frozen=True)
class RemoteFile:
    """A public file: where it sits in a data directory, its pinned URL and sha256."""

    relpath: str
    url: str
    sha256: str | None  # None: not pinned yet; the hash seen on first fetch is printed


def _release(name: str, sha: str) -> RemoteFile:
    return RemoteFile(f"paper_release/{name}", _RELEASE + "outputs/" + name, sha)


REMOTE_FILES: dict[str, RemoteFile] = {
    f.relpath: f
    for f in [
        _release(
            "davinci003_results.jsonl",
            "c51ad09bb6f0fd35910ac42fdc88616fb9e7bc41ac17d628c24d9e9bce15c98b",
        ),
        _release(
            "chatgpt_results.jsonl",
            "87b50837d2dbe955bc8070737125a36021159a6cb44202fe0ddf759d8492be52",
        ),
        _release(
            "llama2-13B_icl-oasstgpt_outputs_temp0.7.jsonl",
            "324ee734ba09bd2ce43e9eb8e4ca506cc80fc0623d617fa04f6fcf8075877254",
        ),
        _release(
            "llama2-13B_icl-oasstgpt_vs_chatgpt_autoeval.jsonl",
            "1ba9692482291e85782ec049231d56ad8b612afd49a203124d8df67b3b92a87d",
        ),
        _release(
            "llama2-13B_icl-oasstgpt_vs_davinci003_autoeval.jsonl",
            "1b50c544d58fbdd5d84d32c18987c6dcefeb90cc1b47f81b59a85312ae23aa8e",
        ),
        _release(
            "llama2-13B_icl-random-oasstgpt_outputs_temp0.7.jsonl",
            "b2824fc851e2e0fce3848c72636821ab504a92495273c9a87fdc68fbaf56828b",
        ),
        _release(
            "llama2-13B_icl-random-oasstgpt_vs_chatgpt_autoeval.jsonl",
            "d4df362ec16a69b49704c073188cbc4eb280ef82ac52d2e519ac657a3a4d46e2",
        ),
        _release(
            "llama2-13B_icl-random-oasstgpt_vs_davinci003_autoeval.jsonl",
            "2feab8e232c8fed7ed5f190838ad3c5124feac85a7eebd8da314e60791d2cc44",
        ),
        _release(
            "llama2base-13B_zeroshot_outputs_temp0.7.jsonl",
            "0d24662633b23efaf31baca7df5a0c46647b6c31586b9bce77a0886326c324eb",
        ),
        _release(
            "llama2base-13B_zeroshot_vs_davinci003_autoeval.jsonl",
            "8df45d5e9cff68c166bad8ee883b2d85c1b23d4cdfd5e829626d010994bac09f",
        ),
        _release(
            "llama2chat-13B_outputs_temp0.7.jsonl",
            "946a6672203ab7af516025a47552155c42e944bbb4fff8b844d42320113d44b8",
        ),
        _release(
            "llama2chat-13B_vs_chatgpt_autoeval.jsonl",
            "9ad3f79883e2671f3d9debe64383c21240890ce84210e60edda1bada2eda4e88",
        ),
        _release(
            "llama2chat-13B_vs_davinci003_autoeval.jsonl",
            "9791116056dfb807cccd9d9e644acc1a18fdfd347f848b5a53f97410472c2cb9",
        ),
        _release(
            "llama2-70B_icl-oasstgpt_outputs_temp0.7.jsonl",
            "1e4198d29f05ec0dbf6a6cc671c06af4b1972503f4e943f97e65baa0f066f48c",
        ),
        _release(
            "llama2-70B_icl-oasstgpt_vs_davinci003_autoeval.jsonl",
            "ca8b0cfca968cf8abe7ea4552c915c34f1a4ee7c827769f43d09f83bb3266179",
        ),
        _release(
            "llama2-70B_icl-oasstgpt_vs_chatgpt_autoeval.jsonl",
            "28ea2631dd126fcd856f0063bc9945ec387cd99ca456169b812c86707318042c",
        ),
        _release(
            "llama1-13B_icl-oasstgpt_outputs_temp0.7.jsonl",
            "b49ec1eac2231306c32ff6e0fcdef625f4028cad1526a8cf369a84d9cc822674",
        ),
        _release(
            "llama1-13B_icl-oasstgpt_vs_davinci003_autoeval.jsonl",
            "2532ff95dfb0a669eb07fae9890a12fdc92bf36838ce27461ed2fed595ebb426",
        ),
        _release(
            "llama2chat-7B_outputs_temp0.7.jsonl",
            "11cf52d300e6d8de83aa367cf00008ce944608fc43110fb9087e0784b3872f0f",
        ),
        _release(
            "llama2chat-7B_vs_davinci003_autoeval.jsonl",
            "06fdca1835c8a2f684bafc4eb8e7c9afbace2a5a9859c285aa0a1fd2534d2ffa",
        ),
        _release(
            "guanaco-7B_outputs_temp0.7.jsonl",
            "bc4fa2240d5607b6e6485ed0460d0084eb58de58003b53c6a36c3b6520fdd84b",
        ),
        _release(
            "guanaco-7B_vs_davinci003_autoeval.jsonl",
            "9387431c4ab7ea06f7fab7fd34a4ac5eef485093fbd3f134c3c7012978c38719",
        ),
        _release(
            "guanaco-13B_outputs_temp0.7.jsonl",
            "8ead8a03ccf88d66eb9f31dda69f4802e389e52daad9af3d25a151d1d2c0becc",
        ),
        _release(
            "guanaco-13B_vs_davinci003_autoeval.jsonl",
            "852a9501c371cce22a1f98cb2301af22495674192bda438ec33cb603f20f5ab2",
        ),
        _release(
            "guanaco-13B_vs_chatgpt_autoeval.jsonl",
            "c53b7e8a9626d6baddf4bc6ed4ae208967a33ae9980e563d6b11ec199462b3ed",
        ),
        RemoteFile(
            "paper_resources/oasst_gpt_9k.jsonl",
            _RELEASE + "resources/oasst_gpt_9k.jsonl",
            None,
        ),
        RemoteFile(
            "alpaca_eval/gpt4_0613.json",
            _ALPACA_EVAL.format("gpt4_0613"),
            "a7f220e428d66d20fa187e895ea2352ad8142fcdc38815365a54e4687893fc8f",
        ),
        RemoteFile(
            "alpaca_eval/llama-2-13b-chat-hf.json",
            _ALPACA_EVAL.format("llama-2-13b-chat-hf"),
            "75ff67385486aef7c93ef5cf57ca29d2fc377b04ae3cb71fe107d7062948647f",
        ),
        RemoteFile(
            "alpaca_eval/llama-2-7b-chat-hf.json",
            _ALPACA_EVAL.format("llama-2-7b-chat-hf"),
            "5a66ed18b1ecef7a6a728eb32665651853092cbf11d518538d80d86c2df1b5ae",
        ),
        RemoteFile(
            "alpaca_eval/text_davinci_003.json",
            _ALPACA_EVAL.format("text_davinci_003"),
            "af0bc112f08c88bf589bbfe6fc1036806d0a0f6fec9c4d5a4db860f5afe73b4b",
        ),
        RemoteFile(
            "alpaca_eval/annotations/alpaca-7b.json",
            _ANNOTATIONS.format("alpaca-7b"),
            "d44ea50f1a81f6ae6a95e8ac1dd08b7eca82cc0a9058a2923b1c70cec1e9eaa5",
        ),
        RemoteFile(
            "alpaca_eval/annotations/falcon-7b-instruct.json",
            _ANNOTATIONS.format("falcon-7b-instruct"),
            "24e953bcc62a55dd0d360ed64de328dda5d1569b56ec567cc2a14f5cdebbcd70",
        ),
        RemoteFile(
            "alpaca_eval/annotations/gpt-3.5-turbo-0301.json",
            _ANNOTATIONS.format("gpt-3.5-turbo-0301"),
            "4c5de0db5c74653f49c50becf008491e7da39ac83ec4893780ebbe7110d1b040",
        ),
        RemoteFile(
            "alpaca_eval/annotations/gpt4.json",
            _ANNOTATIONS.format("gpt4"),
            "822d7ce0fc777c526bd063e5b44d3c179884654f63fe43fe359c5dec524727ff",
        ),
        RemoteFile(
            "alpaca_eval/annotations/llama-2-13b-chat-hf.json",
            _ANNOTATIONS.format("llama-2-13b-chat-hf"),
            "581ebec7a146f37f5d0a685e18a04ff67661dea48f504c84848263b476ce8c50",
        ),
        RemoteFile(
            "alpaca_eval/annotations/llama-2-7b-chat-hf.json",
            _ANNOTATIONS.format("llama-2-7b-chat-hf"),
            "a003092552c9d97793e6e08e82e2c73b96a1031e882e78ef65dfb972a9d74630",
        ),
        RemoteFile(
            "alpaca_eval/annotations/oasst-rlhf-llama-33b.json",
            _ANNOTATIONS.format("oasst-rlhf-llama-33b"),
            "6b72fe91c3addcc5bd9ce07d0b6e181585e5cde3ba7aa054b47abc4b65a0171b",
        ),
        RemoteFile(
            "alpaca_eval/annotations/text_davinci_001.json",
            _ANNOTATIONS.format("text_davinci_001"),
            "09d486ce69568c52229e2123c9e3a0d7c485d64c709d86505297301289c8880b",
        ),
        RemoteFile(
            "alpaca_eval/annotations/vicuna-13b.json",
            _ANNOTATIONS.format("vicuna-13b"),
            "3e43d5de375aa1e8c9d0148a4b352dd5b5ee04f0644469e597c155d28641ea61",
        ),
        RemoteFile(
            "alpaca_eval/annotations/zephyr-7b-beta.json",
            _ANNOTATIONS.format("zephyr-7b-beta"),
            "004401fcd0a1faae086ba33c612550334ff6954d1989fbc17c29d4d379c38687",
        ),
        RemoteFile(
            "alpaca/alpaca_5000.json",
            "https://raw.githubusercontent.com/tatsu-lab/stanford_alpaca/"
            "5e69c50054c48cd3b919c46d13bb2d92a62f4498/data/alpaca_5000.json",
            "fc1add24c93c9fbbe585a64a6c9bf6165eb110225f4470efbff382a913558ec0",
        ),
        RemoteFile(
            "urial/inst_1k_v4.help.txt",
            _URIAL + "urial_prompts/inst_1k_v4.help.txt",
            "226e9719f2e3fe03a937c26ba6175bf8bc604295577dab28f0e0c78a4ffecfed",
        ),
        RemoteFile(
            "urial/inst_1k_v4.txt",
            _URIAL + "urial_prompts/inst_1k_v4.txt",
            "7373f07b27e708a6cfdb7ad27299e1e4ef7ac5acb476860b96254d74f87f54e0",
        ),
        RemoteFile(
            "urial/mt_bench_questions.jsonl",
            _URIAL + "run_scripts/mt-bench/question.jsonl",
            "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7",
        ),
        RemoteFile(
            "judge/fastchat_prompt.jsonl",
            "https://raw.githubusercontent.com/lm-sys/FastChat/"
            "080a703c7e77215a9a7530d421acedb05fe7ed23/fastchat/eval/table/prompt.jsonl",
            "475f1ff9e2872fe0ffd43db38fd5c3277f46fe6b2d62fcd2f968a0c9e59391a3",
        ),
    ]
}


def package_resource(name: str) -> Path:
    """Path of a data file shipped inside the package (`icalign_nb/resources/<name>`)."""
    return Path(str(resources.files("icalign_nb") / "resources" / name))


def data_root(data_dir: str | Path | None = None) -> Path | None:
    """The local data directory in force: the argument, else `ICALIGN_DATA_DIR`, else None."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV)
    return Path(chosen).expanduser() if chosen else None


def fetch(relpath: str, data_dir: str | Path | None = None) -> Path:
    """Return a local path for a public file: from the data directory, else the verified cache."""
    from .pins import check_pin

    root = data_root(data_dir)
    if root is not None:
        path = root / relpath
        if not path.exists():
            raise UserError(f"{path}: not found in the data directory {root} (data_dir, or {DATA_DIR_ENV})")
        return check_pin(path, relpath)
    remote = REMOTE_FILES.get(relpath)
    if remote is None:
        raise UserError(f"{relpath}: not a known public file; known: {', '.join(sorted(REMOTE_FILES))}")
    path = cache_data_dir() / relpath
    if path.exists():
        try:
            return check_pin(path, relpath)
        except UserError as exc:  # a damaged cached copy: fetched again
            print(f"note: {exc}; fetching it again", file=sys.stderr)
    _retrieve(remote, cache_data_dir())
    if remote.sha256 is None:
        print(f"note: {relpath} fetched with sha256 {sha256_file(path)} (not pinned)")
    return path


def _retrieve(remote: RemoteFile, folder: Path, hint: bool = True) -> str:
    """pooch's pinned download of one file into `folder` at its public path: a copy there that matches
    the pin is kept, a missing or broken one is downloaded to a temporary file, checked against the
    pin and only then moved in place. Returns pooch's action: "fetch" (kept), "download" or "update"."""
    import httpx
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)  # pooch says each download on stderr; the callers say it in one line
    try:
        return pooch.retrieve(
            remote.url,
            remote.sha256,
            fname=remote.relpath,
            path=folder,
            downloader=_http_get,
            processor=lambda _path, action, _pooch: action,
        )
    except httpx.HTTPError as exc:
        how = f"; offline? point --data-dir or {DATA_DIR_ENV} at a directory with the same layout"
        raise UserError(f"{remote.url}: download failed ({first_line(exc)}){how if hint else ''}") from None
    except ValueError as exc:  # pooch: the download's hash is not the pinned one (it deleted the download)
        got = re.search(r"got ([0-9a-f]{64})", str(exc))
        digest = f"sha256 {got[1]}" if got else "sha256"
        raise UserError(f"{remote.url}: {digest} does not match the pinned {remote.sha256}") from None
    finally:
        logger.setLevel(level)


def _http_get(url: str, output_file: str, _pooch: object) -> None:
    """pooch's downloader over httpx, the project's HTTP client (its errors say what failed in a line)."""
    import httpx

    with httpx.stream("GET", url, follow_redirects=True, timeout=120) as response:
        response.raise_for_status()
        with open(output_file, "wb") as out:
            for chunk in response.iter_bytes():
                out.write(chunk)


def verify(path: Path, relpath: str) -> bool:
    """True when a local file matches the pinned sha256 of `relpath` (or nothing is pinned)."""
    remote = REMOTE_FILES.get(relpath)
    return remote is None or remote.sha256 is None or sha256_file(path) == remote.sha256


MANIFEST = "SHA256SUMS"  # `sha256  ./relpath` per file, as `sha256sum` writes it


@dataclass(frozen=True)
class FileCheck:
    """What `fetch_files` found for one public file."""

    relpath: str
    ok: bool
    message: str  # one line: "fetched", "in the cache, sha256 matches", "download failed (…)", …


def cache_data_dir() -> Path:
    """Where pinned fetches are kept: `<cache root>/data`, in the public layout."""
    return cache_root() / "data"


def select_files(names: Sequence[str]) -> list[RemoteFile]:
    """Public files by path (`paper_release/x.jsonl`), file name or folder (`paper_release`); all if none."""
    if not names:
        return list(REMOTE_FILES.values())
    chosen: list[RemoteFile] = []
    for name in names:
        key = name.strip("/")
        found = [
            f
            for f in REMOTE_FILES.values()
            if key in (f.relpath, f.relpath.split("/")[0], Path(f.relpath).name, Path(f.relpath).stem)
        ]
        if not found:
            folders = sorted({f.relpath.split("/")[0] for f in REMOTE_FILES.values()})
            raise UserError(f"'{name}' names no public file; folders: {', '.join(folders)} (or a file path)")
        chosen += [f for f in found if f not in chosen]
    return chosen


def fetch_files(names: Sequence[str] = (), data_dir: str | Path | None = None) -> Iterator[FileCheck]:
    """Fetch the chosen public files into the cache, checking each against its pinned sha256 (a broken
    cached copy is fetched again); with a data directory, check the files there against the pins
    instead (nothing is downloaded). The cache's `SHA256SUMS` then lists what it holds intact."""
    root = data_root(data_dir)
    if root is not None:
        for remote in select_files(names):
            yield _check_local(remote, root / remote.relpath)
        return
    checked: dict[str, bool] = {}
    for remote in select_files(names):
        check = _fetch_into_cache(remote)
        checked[remote.relpath] = check.ok
        yield check
    write_manifest(cache_data_dir(), checked)


def _fetch_into_cache(remote: RemoteFile) -> FileCheck:
    """A pinned file in the cache: kept if intact, else (missing or broken) fetched again."""
    try:
        action = _retrieve(remote, cache_data_dir(), hint=False)
    except UserError as exc:
        return FileCheck(remote.relpath, False, str(exc))
    said = {
        "fetch": "in the cache",
        "download": "fetched",
        "update": "fetched again (the cached copy was broken)",
    }
    if remote.sha256 is None:
        digest = sha256_file(cache_data_dir() / remote.relpath)
        return FileCheck(remote.relpath, True, f"{said[action]}, not pinned (sha256 {digest})")
    return FileCheck(remote.relpath, True, f"{said[action]}, sha256 matches the pin")


def _check_local(remote: RemoteFile, path: Path) -> FileCheck:
    """A file of a local data directory against its pin."""
    if not path.is_file():
        return FileCheck(remote.relpath, False, f"not found at {path}")
    if remote.sha256 is None:
        return FileCheck(remote.relpath, True, "present (not pinned: no sha256 to check)")
    digest = sha256_file(path)  # hashed once: a large file is read once
    if digest == remote.sha256:
        return FileCheck(remote.relpath, True, "sha256 matches")
    return FileCheck(
        remote.relpath, False, f"{path}: sha256 {digest} does not match the pin (a changed or broken copy)"
    )


def write_manifest(folder: Path, checked: dict[str, bool] | None = None) -> None:
    """`SHA256SUMS` over the pinned files a folder holds (only those that match their pins); files
    already checked (`checked`: relpath -> matches) are not hashed again."""
    checked = checked or {}

    def intact(relpath: str) -> bool:
        if relpath in checked:
            return checked[relpath]
        return (folder / relpath).is_file() and verify(folder / relpath, relpath)

    lines = [f"{f.sha256}  ./{f.relpath}" for f in REMOTE_FILES.values() if f.sha256 and intact(f.relpath)]
    if lines:
        atomic_write_text(folder / MANIFEST, "\n".join(lines) + "\n")


def complete(folder: Path) -> bool:
    """True when `folder` holds every pinned public file (as `icalign data fetch` leaves the cache)."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return False
    listed = {
        line.split()[-1].removeprefix("./") for line in manifest.read_text().splitlines() if line.strip()
    }
    return all(f.relpath in listed for f in REMOTE_FILES.values() if f.sha256)
