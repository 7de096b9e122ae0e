#include "perf/acl_anchor.h"

#include <rte_byteorder.h>
#include <rte_errno.h>
#include <rte_malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstring>

#include "dataplane/trie.h"

namespace moat::perf {

namespace {

// IPv4: protocol, source, destination, p1, p2, ingress. IPv6: the addresses take four fields
// each. rte_acl reads its input in 4-byte groups after the 1-byte first field (input_index).
constexpr unsigned kFieldsV4 = 6, kFieldsV6 = 12;

RTE_ACL_RULE_DEF(AclRule, kFieldsV6);

/// The field definitions of a family: `words` address words per address.
std::vector<rte_acl_field_def> field_defs(unsigned words) {
    std::vector<rte_acl_field_def> d;
    const auto add = [&](std::uint8_t type, std::uint8_t size, std::uint8_t input, std::size_t offset) {
        d.push_back({type, size, static_cast<std::uint8_t>(d.size()), input, static_cast<std::uint32_t>(offset)});
    };
    add(RTE_ACL_FIELD_TYPE_BITMASK, sizeof(std::uint8_t), 0, offsetof(AclKey, proto));
    std::uint8_t input = 1;
    for (unsigned w = 0; w < words; ++w)
        add(RTE_ACL_FIELD_TYPE_MASK, sizeof(std::uint32_t), input++, offsetof(AclKey, src) + 4 * w);
    for (unsigned w = 0; w < words; ++w)
        add(RTE_ACL_FIELD_TYPE_MASK, sizeof(std::uint32_t), input++, offsetof(AclKey, dst) + 4 * w);
    add(RTE_ACL_FIELD_TYPE_RANGE, sizeof(std::uint16_t), input, offsetof(AclKey, p1));
    add(RTE_ACL_FIELD_TYPE_RANGE, sizeof(std::uint16_t), input++, offsetof(AclKey, p2));
    add(RTE_ACL_FIELD_TYPE_MASK, sizeof(std::uint32_t), input, offsetof(AclKey, ingress));
    return d;
}

std::size_t heap_bytes() {
    std::size_t total = 0;
    for (unsigned s = 0; s < rte_socket_count(); ++s) {
        rte_malloc_socket_stats st{};
        if (rte_malloc_get_socket_stats(rte_socket_id_by_idx(s), &st) == 0)
            total += st.heap_allocsz_bytes;
    }
    return total;
}

}  // namespace

AclKey acl_key(const dp::PacketKey& k) noexcept {
    const dp::TrieKey t = dp::trie_key(k);
    const unsigned words = k.family == dp::Family::ipv4 ? 1 : 4;
    AclKey a{};
    a.proto = k.proto;
    for (unsigned w = 0; w < words; ++w) {
        a.src[w] = rte_cpu_to_be_32(t.d[w]);
        a.dst[w] = rte_cpu_to_be_32(t.d[words + w]);
    }
    a.p1 = rte_cpu_to_be_16(static_cast<std::uint16_t>(t.d[2 * words]));
    a.p2 = rte_cpu_to_be_16(static_cast<std::uint16_t>(t.d[2 * words + 1]));
    a.ingress = rte_cpu_to_be_32(t.d[2 * words + 3]);
    return a;
}

std::unique_ptr<AclAnchor> AclAnchor::build(std::span<const dp::Entry> ranked, std::string& error, dp::Family family) {
    static std::atomic<unsigned> serial{0};
    const unsigned words = family == dp::Family::ipv4 ? 1 : 4;
    const unsigned nfields = family == dp::Family::ipv4 ? kFieldsV4 : kFieldsV6;
    std::unique_ptr<AclAnchor> a(new AclAnchor);
    std::vector<AclRule> rules;
    for (std::size_t r = 0; r < ranked.size(); ++r) {
        const dp::Entry& e = ranked[r];
        if (e.family != family || e.payload != dp::kNoPayload)
            continue;
        std::uint32_t lo[dp::kMaxDims], hi[dp::kMaxDims];
        dp::rule_ranges(e, lo, hi);
        AclRule x{};
        x.data.category_mask = 1;
        x.data.priority = static_cast<std::int32_t>(RTE_ACL_MAX_PRIORITY - r);
        x.data.userdata = static_cast<std::uint32_t>(r + 1);
        const unsigned proto = 2 * words + 2, p1 = 2 * words, ingress = 2 * words + 3;
        unsigned f = 0;
        x.field[f].value.u8 = static_cast<std::uint8_t>(lo[proto]);
        x.field[f++].mask_range.u8 = lo[proto] == hi[proto] ? 0xff : 0;
        // An address word of a prefix is a range whose bounds agree on its mask's bits.
        for (unsigned d = 0; d < 2 * words; ++d, ++f) {
            x.field[f].value.u32 = lo[d];
            x.field[f].mask_range.u32 = static_cast<std::uint32_t>(__builtin_popcount(~(lo[d] ^ hi[d])));
        }
        for (unsigned p = p1; p < p1 + 2; ++p, ++f) {
            x.field[f].value.u16 = static_cast<std::uint16_t>(lo[p]);
            x.field[f].mask_range.u16 = static_cast<std::uint16_t>(hi[p]);
        }
        x.field[f].value.u32 = lo[ingress];
        x.field[f].mask_range.u32 = lo[ingress] == hi[ingress] ? 32 : 0;
        rules.push_back(x);
    }
    const std::string name = "moat_anchor_" + std::to_string(serial++);
    rte_acl_param prm{};
    prm.name = name.c_str();
    prm.socket_id = SOCKET_ID_ANY;
    prm.rule_size = RTE_ACL_RULE_SZ(nfields);
    prm.max_rule_num = static_cast<std::uint32_t>(std::max<std::size_t>(rules.size(), 1));

    const std::size_t heap_before = heap_bytes();
    const auto t0 = std::chrono::steady_clock::now();
    a->ctx_ = rte_acl_create(&prm);
    if (!a->ctx_) {
        error = std::string("rte_acl_create: ") + rte_strerror(rte_errno);
        return nullptr;
    }
    if (!rules.empty()) {
        // A context's rules are RTE_ACL_RULE_SZ(nfields) bytes apart; AclRule has room for IPv6.
        std::vector<std::uint8_t> packed(rules.size() * prm.rule_size);
        for (std::size_t i = 0; i < rules.size(); ++i)
            std::memcpy(packed.data() + i * prm.rule_size, &rules[i], prm.rule_size);
        if (const int rc = rte_acl_add_rules(a->ctx_, reinterpret_cast<const rte_acl_rule*>(packed.data()),
                                             static_cast<std::uint32_t>(rules.size()));
            rc != 0) {
            error = std::string("rte_acl_add_rules: ") + rte_strerror(-rc);
            return nullptr;
        }
    }
    rte_acl_config cfg{};
    cfg.num_categories = 1;
    const std::vector<rte_acl_field_def> defs = field_defs(words);
    cfg.num_fields = static_cast<std::uint32_t>(defs.size());
    std::copy(defs.begin(), defs.end(), cfg.defs);
    if (const int rc = rte_acl_build(a->ctx_, &cfg); rc != 0) {
        error = std::string("rte_acl_build: ") + rte_strerror(-rc);
        return nullptr;
    }
    a->build_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    a->memory_bytes_ = heap_bytes() - heap_before;

    static constexpr std::pair<enum rte_acl_classify_alg, const char*> kAlgs[] = {
        {RTE_ACL_CLASSIFY_AVX512X32, "avx512x32"}, {RTE_ACL_CLASSIFY_AVX512X16, "avx512x16"},
        {RTE_ACL_CLASSIFY_AVX2, "avx2"},           {RTE_ACL_CLASSIFY_SSE, "sse"},
        {RTE_ACL_CLASSIFY_SCALAR, "scalar"},
    };
    for (const auto& [alg, alg_name] : kAlgs)
        if (rte_acl_set_ctx_classify(a->ctx_, alg) == 0) {
            a->alg_name_ = alg_name;
            break;
        }
    return a;
}

AclAnchor::~AclAnchor() { rte_acl_free(ctx_); }

void AclAnchor::classify(const std::uint8_t* const* data, dp::Rank* results, std::uint32_t n) const {
    static_assert(sizeof(dp::Rank) == sizeof(std::uint32_t));
    rte_acl_classify(ctx_, const_cast<const std::uint8_t**>(data), results, n, 1);
    for (std::uint32_t i = 0; i < n; ++i)
        results[i] = results[i] == 0 ? dp::kNoMatch : results[i] - 1;
}

}  // namespace moat::perf
