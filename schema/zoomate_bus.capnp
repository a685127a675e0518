@0xd5a1c3e0b7f24a91;
# zoomate segment bus, version 1. Placeholder: fleshed out by the bus module.

struct Envelope {
  version @0 :UInt16;
}
