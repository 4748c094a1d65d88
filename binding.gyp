{
  "targets": [
    {
      "target_name": "thinship_device",
      "sources": ["native/thinship_device.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "conditions": [["OS!='linux'", {"type": "none"}]]
    }
  ]
}
