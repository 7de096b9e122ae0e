#include "control/compile/patterns.h"

#include <vector>

namespace moat::ctl {

unsigned pattern_flags(const PayloadSpec& p) {
    unsigned flags = HS_FLAG_SINGLEMATCH;
    if (p.flags.find('i') != std::string::npos)
        flags |= HS_FLAG_CASELESS;
    if (p.flags.find('s') != std::string::npos)
        flags |= HS_FLAG_DOTALL;
    if (p.flags.find('m') != std::string::npos)
        flags |= HS_FLAG_MULTILINE;
    return flags;
}

Result<dp::HsDatabasePtr> compile_patterns(std::span<const PayloadSpec> patterns) {
    std::vector<const char*> exprs;
    std::vector<unsigned> flags, ids;
    for (std::size_t i = 0; i < patterns.size(); ++i) {
        exprs.push_back(patterns[i].regex.c_str());
        flags.push_back(pattern_flags(patterns[i]));
        ids.push_back(static_cast<unsigned>(i));
    }
    hs_database_t* db = nullptr;
    hs_compile_error_t* err = nullptr;
    if (hs_compile_multi(exprs.data(), flags.data(), ids.data(), static_cast<unsigned>(exprs.size()), HS_MODE_BLOCK,
                         nullptr, &db, &err) != HS_SUCCESS) {
        std::string error = err && err->message ? err->message : "does not compile";
        if (err && patterns.size() > 1 && err->expression >= 0 &&
            static_cast<std::size_t>(err->expression) < patterns.size())
            error = "pattern /" + patterns[static_cast<std::size_t>(err->expression)].regex + "/: " + error;
        hs_free_compile_error(err);
        return fail(error);
    }
    return dp::HsDatabasePtr(db);
}

}  // namespace moat::ctl
