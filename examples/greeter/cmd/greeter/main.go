// greeter prints a greeting and the CPU it runs on; mab's demo cross-compiles it.
package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	name := "world"
	if len(os.Args) > 1 {
		name = os.Args[1]
	}
	fmt.Printf("hello, %s, from %s/%s\n", name, runtime.GOOS, runtime.GOARCH)
}
