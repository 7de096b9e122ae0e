// libFuzzer target: the packet parser, both classifiers and the fragment table on arbitrary
// frames. The first input byte picks the parse settings and the arrival port, the rest is the
// frame (libFuzzer hands it over in a buffer of exactly its size, so AddressSanitizer sees any
// read past its end). Besides memory errors it checks what the parser promises, that the trie
// and the reference classifier agree, and that the fragment table stays within its bounds.
#include <rte_eal.h>
#include <rte_errno.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "control/compile/load.h"
#include "control/config/config.h"
#include "control/compile/tables.h"
#include "dataplane/classifier_ref.h"
#include "dataplane/classify.h"
#include "dataplane/fragments.h"
#include "dataplane/parse.h"
#include "fuzz/check.h"

namespace {

// Every field kind: addresses and prefixes of both families, port ranges, ICMP, on=, mirrors.
constexpr const char* kPolicy = R"([appliance]
me = 198.18.0.10, 198.18.0.20, [2001:db8::10]
assign = Servers
[filterlist Web]
filter = *+198.18.0.10:80:TCP
filter = *+[2001:db8::10]:80-90:TCP
filter = 198.18.128.0/17+198.18.0.10:1024-65535:UDP on=outside
[filterlist Services]
filter = *+198.18.0.20:53:UDP
filter = *=0::ICMP:8/0
filter = [2001:db8::]/32+[2001:db8::10]::ICMPV6:128
filter = *+0::47
[filterlist Signatures]
filter = *+0:80:TCP payload=/admin/i
filter = *+0::UDP payload=/\x90{4}/s
[filterlist Rest]
filter = *+0
filter = *=*
[policy Servers]
rule = Web -> permit
rule = Services -> permit
rule = Signatures -> block
rule = Rest -> block
)";

struct State {
    moat::ctl::LoadResult loaded;  ///< owns the entries the table set views
    std::unique_ptr<moat::dp::TableSet> tables;
    std::unique_ptr<moat::dp::FragmentTable> fragments;
    std::uint64_t now = 0;
};

State* state = nullptr;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    std::vector<std::string> args{"packet_fuzz", "--no-huge", "-m", "64", "--no-pci", "-l", "0",
                                  "--file-prefix", "moat-fuzz-" + std::to_string(getpid()), "--log-level", "*:error"};
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0) {
        std::fprintf(stderr, "packet_fuzz: EAL: %s\n", rte_strerror(rte_errno));
        std::abort();
    }
    state = new State;
    state->loaded = moat::ctl::load_policy_text(kPolicy, "packet_fuzz.ini");
    MOAT_FUZZ_CHECK(state->loaded.usable());
    auto built = moat::ctl::build_table_set(*state->loaded.config, *state->loaded.compiled, 1, 1);
    MOAT_FUZZ_CHECK(built);
    state->tables = std::move(built->tables);
    std::string error;
    state->fragments = moat::dp::FragmentTable::create(64, SOCKET_ID_ANY, error);
    MOAT_FUZZ_CHECK(state->fragments);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace moat::dp;
    if (size == 0)
        return 0;
    const TableSet& t = *state->tables;
    ParsePolicy pol = t.parse;
    const std::uint8_t mode = data[0];
    pol.ip_options_allow = mode & 1;
    pol.antispoof = mode & 2;
    pol.fragments_track = !(mode & 4);
    const Ingress in = mode & 8 ? Ingress::inside : Ingress::outside;
    const std::uint8_t* frame = data + 1;
    const auto len = static_cast<std::uint32_t>(size - 1);

    PacketMeta m;
    parse_frame(frame, len, in, pol, m);
    PacketMeta full;  // the short path must be invisible
    parse_frame_in_full(frame, len, in, pol, full);
    MOAT_FUZZ_CHECK(m == full);
    MOAT_FUZZ_CHECK(m.key.ingress == in);
    MOAT_FUZZ_CHECK((m.drop == DropReason::fragment) == (m.frag.why != FragDrop::none));
    if (m.frag.present)
        MOAT_FUZZ_CHECK(m.frag.begin <= m.frag.end && m.frag.end <= 65535 && m.frag.begin % 8 == 0);
    if (m.drop != DropReason::none || m.bypass)
        return 0;
    MOAT_FUZZ_CHECK(m.key.family == Family::ipv4 || m.key.family == Family::ipv6);
    MOAT_FUZZ_CHECK(std::uint32_t{m.payload_offset} + m.payload_length <= len);
    MOAT_FUZZ_CHECK(!(m.key.has_ports && m.key.has_icmp));

    const Rank want = classify_ref(t.rules, m.key);
    const Trie& trie = m.key.family == Family::ipv4 ? t.v4 : t.v6;
    static const std::vector<LeafScan> scans = supported_leaf_scans();
    for (const LeafScan s : scans)
        MOAT_FUZZ_CHECK(trie_lookup(trie, trie_key(m.key), s) == want);

    // Payload filters: the trie with their entries agrees with the reference, and the scan reads
    // the payload where the parser says it is (AddressSanitizer watches the frame's end).
    const std::size_t f = m.key.family == Family::ipv4 ? 0 : 1;
    const Rank any = classify_ref_any(t.rules, m.key);
    if (t.has_payload[f])
        MOAT_FUZZ_CHECK(trie_lookup(f == 0 ? t.v4_payload : t.v6_payload, trie_key(m.key), LeafScan::scalar) == any);
    if (any != kNoMatch && t.rules[any].payload != kNoPayload) {
        const std::uint32_t n = std::min<std::uint32_t>(m.payload_length, t.payload.scan_bytes);
        const Rank r = settle_payload(t, t.payload.scratch[0].get(), m.key, want, {frame + m.payload_offset, n},
                                      {t.payload.matched[0].get(), t.payload.patterns});
        MOAT_FUZZ_CHECK(r == want || (r < want && t.rules[r].payload != kNoPayload && header_matches(t.rules[r], m.key)));
    }

    // Time moves on by a tenth of the timeout per input: entries come, go and expire.
    Verdict v{want, want != kNoMatch && t.rules[want].action == Action::permit ? DropReason::none : DropReason::policy};
    state->now += rte_get_tsc_hz() * kFragmentTimeoutMs / 10000;
    state->fragments->settle({&m, 1}, {&v, 1}, 1, state->now);
    state->fragments->sweep(state->now, 4);
    MOAT_FUZZ_CHECK(state->fragments->in_use() <= state->fragments->capacity());
    if (v.drop == DropReason::fragment)
        MOAT_FUZZ_CHECK(m.frag.present && m.frag.why != FragDrop::none);
    return 0;
}
