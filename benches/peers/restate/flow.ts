// The review-request flow of the peer benchmark as a Restate workflow (TypeScript SDK), with the
// same compressed timings as benches/peers/aftercart/review_peer.flow: send a confirmation
// (ctx.run); sleep 1 s; wait for the "delivered" durable promise for at most 2 s; send the
// review request (ctx.run) or, on timeout, nothing. The ctx.run stands for the SMS provider:
// it journals the wall-clock instant the message reached it; the workflow returns the review's.
// Serves on 127.0.0.1:9080 (HTTP/2); register with POST 127.0.0.1:9070/deployments.
import * as restate from "@restatedev/restate-sdk";

const WAIT_MS = 1000;
const DELIVERY_TIMEOUT_MS = 2000;

const reviewPeer = restate.workflow({
  name: "ReviewPeer",
  handlers: {
    run: async (ctx: restate.WorkflowContext, i: number): Promise<number> => {
      await ctx.run("confirmation", async () => Date.now());
      await ctx.sleep(WAIT_MS);
      try {
        await ctx.promise<boolean>("delivered").get().orTimeout(DELIVERY_TIMEOUT_MS);
      } catch (e) {
        // Timed out: finished without a review, at this instant, as a negative.
        if (e instanceof restate.TimeoutError) return -(await ctx.run("timeout", async () => Date.now()));
        throw e;
      }
      return await ctx.run("review", async () => Date.now());
    },
    delivered: async (ctx: restate.WorkflowSharedContext): Promise<void> => {
      await ctx.promise<boolean>("delivered").resolve(true);
    },
  },
});

restate.serve({ services: [reviewPeer], port: Number(process.env.PORT ?? 9080) });
