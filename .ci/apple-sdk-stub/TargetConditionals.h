/* A stand-in for the macOS SDK's TargetConditionals.h, for CI's cross `cargo check
   --target aarch64-apple-darwin` only: ring (TLS for Hub downloads) compiles C in its
   build script, and Linux has no Apple SDK. Nothing compiled with it is linked or run. */
#ifndef HEADROOM_CI_TARGET_CONDITIONALS_H
#define HEADROOM_CI_TARGET_CONDITIONALS_H
#define TARGET_OS_MAC 1
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
#define TARGET_OS_IOS 0
#define TARGET_OS_TV 0
#define TARGET_OS_WATCH 0
#define TARGET_OS_SIMULATOR 0
#define TARGET_CPU_ARM64 1
#endif
