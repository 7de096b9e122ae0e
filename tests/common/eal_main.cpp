// The main() of the test binaries that need EAL: GoogleTest with EalEnvironment (eal_env.h).
#include <gtest/gtest.h>

#include "tests/common/eal_env.h"

int main(int argc, char** argv) {
    ::testing::InitGoogleTest(&argc, argv);
    ::testing::AddGlobalTestEnvironment(new moat::test::EalEnvironment);
    return RUN_ALL_TESTS();
}
