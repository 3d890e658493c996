// cnitool-weave: a minimal CNI runtime built on libcni, for end-to-end tests of the
// weave-net plugin through the same code path container runtimes use.
//
// Usage:
//
//	cnitool-weave add|check|del <conflist.json> <netns path> <containerID> [ifname]
//	cnitool-weave validate <conflist.json>
//
// Environment:
//
//	CNI_PATH            plugin directories, ':'-separated (required)
//	CNITOOL_CACHE_DIR   libcni result cache (default /var/lib/cni); use a temp dir in tests
//	CNITOOL_CAP_ARGS    JSON object of capability arguments, e.g.
//	                    {"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}
//	CNITOOL_ARGS        plugin args "K=V;K2=V2" (sent to plugins as CNI_ARGS)
//
// add prints the result JSON on stdout; validate prints the plugins' capabilities.
// Any failure prints the error on stderr and exits 1 (2 for bad usage).
//
// Build offline (Debian golang-github-appc-cni-dev):
//
//	GO111MODULE=off GOPATH=<tmp>/gopath:/usr/share/gocode GOPROXY=off go build -o cnitool-weave .
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: cnitool-weave add|check|del <conflist.json> <netns path> <containerID> [ifname]")
	fmt.Fprintln(os.Stderr, "       cnitool-weave validate <conflist.json>")
	os.Exit(2)
}

func fail(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "cnitool-weave: "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 3 {
		usage()
	}
	cmd := os.Args[1]
	conflist, err := libcni.ConfListFromFile(os.Args[2])
	if err != nil {
		fail("reading %s: %v", os.Args[2], err)
	}
	cniPath := os.Getenv("CNI_PATH")
	if cniPath == "" {
		fail("CNI_PATH is not set")
	}
	cacheDir := os.Getenv("CNITOOL_CACHE_DIR")
	if cacheDir == "" {
		cacheDir = libcni.CacheDir
	}
	cni := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(cniPath), cacheDir, nil)
	ctx := context.Background()

	if cmd == "validate" {
		caps, err := cni.ValidateNetworkList(ctx, conflist)
		if err != nil {
			fail("validate: %v", err)
		}
		out, _ := json.Marshal(map[string]interface{}{"capabilities": caps})
		fmt.Println(string(out))
		return
	}

	if len(os.Args) < 5 || len(os.Args) > 6 {
		usage()
	}
	rt := &libcni.RuntimeConf{
		ContainerID: os.Args[4],
		NetNS:       os.Args[3],
		IfName:      "eth0",
	}
	if len(os.Args) == 6 {
		rt.IfName = os.Args[5]
	}
	if s := os.Getenv("CNITOOL_CAP_ARGS"); s != "" {
		if err := json.Unmarshal([]byte(s), &rt.CapabilityArgs); err != nil {
			fail("CNITOOL_CAP_ARGS is not a JSON object: %v", err)
		}
	}
	if s := os.Getenv("CNITOOL_ARGS"); s != "" {
		for _, kv := range strings.Split(s, ";") {
			p := strings.SplitN(kv, "=", 2)
			if len(p) != 2 {
				fail("CNITOOL_ARGS: %q is not K=V", kv)
			}
			rt.Args = append(rt.Args, [2]string{p[0], p[1]})
		}
	}

	switch cmd {
	case "add":
		result, err := cni.AddNetworkList(ctx, conflist, rt)
		if err != nil {
			fail("add: %v", err)
		}
		out, err := json.Marshal(result)
		if err != nil {
			fail("encoding the result: %v", err)
		}
		fmt.Println(string(out))
	case "check":
		if err := cni.CheckNetworkList(ctx, conflist, rt); err != nil {
			fail("check: %v", err)
		}
	case "del":
		if err := cni.DelNetworkList(ctx, conflist, rt); err != nil {
			fail("del: %v", err)
		}
	default:
		usage()
	}
}
