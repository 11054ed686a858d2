package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/chromedp/chromedp"
)

func main() {
	base := os.Args[1]
	out := os.Args[2]
	urls := os.Args[3:]
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath("/usr/bin/chromium"), chromedp.NoSandbox)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			fmt.Println("console:", m.String())
		}
	}()
	for _, u := range urls {
		parts := strings.SplitN(u, "=", 2)
		name, path := parts[0], parts[1]
		for _, size := range [][2]int64{{1280, 800}, {390, 844}} {
			err := chromedp.Do(ctx, chromedp.EmulateViewport(size[0], size[1]), chromedp.Navigate(base+path))
			if err != nil {
				fmt.Println(err)
				continue
			}
			if strings.HasPrefix(path, "/dashboard") {
				if ok, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!document.querySelector('[data-test-id="login-form"]')`)); ok && name != "login" {
					chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS(`[data-test-id="login-key-input"]`), "key_test_abc123"),
						chromedp.SendKeys(chromedp.CSS(`[data-test-id="login-secret-input"]`), "secret_test_xyz789"),
						chromedp.Click(chromedp.CSS(`[data-test-id="login-button"]`)))
				}
			}
			time.Sleep(1500 * time.Millisecond)
			buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			if err != nil {
				fmt.Println(err)
				continue
			}
			os.WriteFile(fmt.Sprintf("%s/%s-%d.png", out, name, size[0]), buf, 0o644)
		}
	}
}
