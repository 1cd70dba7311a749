"""The public files the project reads, each pinned: where it sits in a data directory, its URL at a
fixed commit, and its sha256."""

from __future__ import annotations

from dataclasses import dataclass

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
